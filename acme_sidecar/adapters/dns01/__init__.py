"""DNS-01: providers (RFC 2136 through dnspython, APIs through dns-lexicon), zones and
propagation, and the challenge responder. ``setup.build_router`` wires them from the settings."""
