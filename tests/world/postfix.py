"""A private Postfix (Debian's postfix package) as the SENDING MTA of the DANE world.

Its own ``config_directory``, ``queue_directory`` and ``data_directory`` under the workdir (the
system's Postfix is never touched); its ``master -d`` runs in the foreground (after
``postfix check`` made the queue). It takes mail by SMTP on 127.0.0.1 at ``port`` from 127/8
and relays all of it to ``[relay_host]:relay_port`` with ``smtp_tls_security_level = dane`` and
``smtp_dns_support_level = dnssec``: the relay's address and its TLSA records
(``_<relay_port>._tcp.<relay_host>``) must come DNSSEC-validated, and the TLS connection is
verified against the TLSA records.

Postfix resolves through libc, whose ``resolv.conf`` has no port: the master runs in a mount
namespace of its own (``unshare --mount``) where a private resolv.conf naming the validating
resolver (``nameserver <host>``, ``options trust-ad`` so glibc passes the AD bit on) is
bind-mounted over ``/etc/resolv.conf``; the machine's file stays as it is. Every child of the
master inherits that namespace. The log is ``maillog`` in the workdir: the master's output (``-s``,
``maillog_file = /dev/stdout``), its own errors at start included. Every
message is retried each second (short back-off) so a test sees a deferral turn into delivery,
and each delivery runs in a new ``smtp`` process with no cached connection (``max_use=1``,
no connection cache): its own lookup of the TLSA records (the process caches them for their TTL).
"""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from .proc import Child, free_port, require_binary, tcp_open, wait_for

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
  -o max_use=1
relay     unix  -       -       n       -       -       smtp
  -o max_use=1
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixSender:
    """``start``/``stop``; ``send`` hands it one message; ``outcome`` reads its log."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *, resolver: str, relay_host: str, relay_port: int) -> None:
        postfix = require_binary("postfix", "postfix")
        unshare = require_binary("unshare", "util-linux")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config = workdir / "etc"
        self.config.mkdir(exist_ok=True)
        self.maillog = workdir / "maillog"  # the master's stdout: every process logs there
        self.port = free_port()
        self.relay = f"[{relay_host}]:{relay_port}"
        resolv = workdir / "resolv.conf"
        resolv.write_text(f"nameserver {resolver}\noptions trust-ad edns0 attempts:2 timeout:2\n")
        self._write_config(relay_host, relay_port)
        daemons = subprocess.run(
            [require_binary("postconf", "postfix"), "-h", "daemon_directory"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # the master itself in the foreground (-d), logging to its stdout (-s): SIGTERM to it
        # ends every Postfix process
        master = f"{daemons}/master -d -s -c {self.config}"
        script = f"mount --bind {resolv} /etc/resolv.conf && exec {master}"
        argv = [unshare, "--mount", "--propagation", "private", "sh", "-c", script]
        self._child = Child("postfix", argv, self.maillog)
        self._postfix = postfix

    def _write_config(self, relay_host: str, relay_port: int) -> None:
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.workdir / "queue"),
            "data_directory": str(self.workdir / "data"),
            "mail_owner": "postfix",
            "myhostname": "sender.test",
            "mydomain": "sender.test",
            "myorigin": "sender.test",
            "mydestination": "",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": self.relay,
            "smtp_tls_security_level": "dane",
            "smtp_dns_support_level": "dnssec",
            "smtp_tls_loglevel": "1",
            "smtp_host_lookup": "dns",
            "smtp_address_preference": "ipv4",
            "dnssec_probe": "",
            "maillog_file": "/dev/stdout",  # the master's (-s), so its own fatal errors too
            "maillog_file_prefixes": "/dev/stdout",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "smtp_tls_session_cache_database": "",
            "smtp_connection_cache_on_demand": "no",  # each message: a new lookup, a new TLS
            "smtpd_tls_security_level": "none",
        }
        text = "".join(f"{key} = {value}\n" for key, value in main.items())
        (self.config / "main.cf").write_text(text)
        self._write_master()

    def _write_master(self) -> None:
        (self.config / "master.cf").write_text(MASTER_CF.format(listen=f"{self.host}:{self.port}"))

    def start(self) -> None:
        """Create the queue (``postfix check``), start the master and wait for its smtpd."""
        for parent in (self.workdir, *self.workdir.parents):  # Postfix's own user walks in
            if parent == Path(tempfile.gettempdir()) or parent == parent.parent:
                break
            parent.chmod(parent.stat().st_mode | 0o111)
        (self.workdir / "queue").mkdir(mode=0o755, exist_ok=True)
        data = self.workdir / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(data, "postfix", "postfix")
        done = subprocess.run(
            [self._postfix, "-c", str(self.config), "check"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix check failed: {done.stdout}{done.stderr}")
        for attempt in range(1, 4):
            self._child.start()
            try:
                wait_for(lambda: tcp_open(self.port), "postfix (sender)", self._child)
            except RuntimeError as exc:
                if self._child.running() or attempt == 3:  # Postfix says why in its own log
                    raise RuntimeError(f"{exc}\nmaillog:\n{self.log()[-2000:]}") from None
            else:
                return
            # the master exited at once: its free port was taken meanwhile (seen under load:
            # an outgoing connection's local port); again on another one
            self.port = free_port()
            self._write_master()

    def stop(self) -> None:
        """Stop the master (and with it every Postfix process of this instance)."""
        self._child.stop()

    def send(self, subject: str, recipient: str = "postmaster@example.test") -> str:
        """Hand one message to the sender by SMTP; return its queue ID (cleanup's
        ``<id>: message-id=<...>`` line)."""
        message_id = f"<{uuid.uuid4().hex}@sender.test>"
        message = EmailMessage()
        message["From"] = "tester@sender.test"
        message["To"] = recipient
        message["Subject"] = subject
        message["Message-ID"] = message_id
        message.set_content(f"{subject}\n")
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(message)
        pattern = re.compile(rf"(\w+): message-id={re.escape(message_id)}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = pattern.search(self.log())
            if found:
                return found.group(1)
            time.sleep(0.05)
        raise RuntimeError(f"postfix logged no queue ID for {subject!r}: {self.log()[-2000:]}")

    def log(self) -> str:
        """The whole mail log so far."""
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self, queue_id: str) -> list[str]:
        """The log lines of one message."""
        return [line for line in self.log().splitlines() if f" {queue_id}: " in line]

    def outcome(self, queue_id: str, timeout: float = 30) -> str:
        """Wait for the message's first delivery attempt: ``sent``, ``deferred`` or
        ``bounced`` (from its ``status=`` line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines(queue_id):
                found = re.search(r" status=(\w+)", line)
                if found:
                    return found.group(1)
            self._child.check_alive()
            time.sleep(0.1)
        raise RuntimeError(f"no delivery attempt of {queue_id} in {timeout}s: {self.log()[-3000:]}")
