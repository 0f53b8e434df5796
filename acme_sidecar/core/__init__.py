"""The pure core: values, names, discovery, planning, state rules and settling. No I/O here:
every function takes what it needs (the clock included) as arguments."""
