"""Smoke tests proving every test-world component really works."""

from __future__ import annotations

import uuid

import requests
from cryptography import x509
from dns import message as dns_message
from dns import query as dns_query

from tests.world import World
from tests.world.dns import MockDNS
from tests.world.docker import DockerWorld
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble
from tests.world.web import Nginx


def _resolve(server: MockDNS, name: str, rdtype: str = "A") -> list[str]:
    query = dns_message.make_query(name, rdtype)
    answer = dns_query.udp(query, server.host, port=server.port, timeout=2)
    return sorted(item.to_text() for rrset in answer.answer for item in rrset)


def test_dns_default_and_add_a(dns: MockDNS) -> None:
    name = f"{uuid.uuid4().hex}.example.test"
    assert _resolve(dns, name) == ["127.0.0.1"]
    assert _resolve(dns, name, "AAAA") == []
    dns.add_a(name, ["127.0.0.2", "127.0.0.3"])
    assert _resolve(dns, name) == ["127.0.0.2", "127.0.0.3"]
    dns.clear_a(name)
    assert _resolve(dns, name) == ["127.0.0.1"]


def test_dns_caa_aaaa_txt(dns: MockDNS) -> None:
    name = f"{uuid.uuid4().hex}.example.test"
    dns.add_caa(name, [{"tag": "issue", "value": "ca.example"}])
    assert _resolve(dns, name, "CAA") == ['0 issue "ca.example"']
    dns.clear_caa(name)
    assert _resolve(dns, name, "CAA") == []
    dns.add_aaaa(name, ["::1"])
    assert _resolve(dns, name, "AAAA") == ["::1"]
    dns.clear_aaaa(name)
    dns.set_txt(f"_acme-challenge.{name}", "token")
    assert _resolve(dns, f"_acme-challenge.{name}", "TXT") == ['"token"']
    dns.clear_txt(f"_acme-challenge.{name}")
    assert _resolve(dns, f"_acme-challenge.{name}", "TXT") == []


def test_nginx_serves_webroot(nginx: Nginx) -> None:
    token = nginx.webroot / "tok123"
    token.write_text("tok123.thumb")
    try:
        resp = requests.get(f"{nginx.url}tok123", timeout=5, headers={"Host": "mx.example.test"})
        assert resp.status_code == 200
        assert resp.text == "tok123.thumb"
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert requests.get(f"{nginx.url}missing", timeout=5).status_code == 404
    finally:
        token.unlink()


def test_pebble_directory_and_roots(pebble: Pebble) -> None:
    directory = requests.get(pebble.directory_url, verify=str(pebble.ca_bundle), timeout=5)
    assert directory.status_code == 200
    assert "newOrder" in directory.json()
    root = x509.load_pem_x509_certificate(pebble.root_pem())
    intermediate = x509.load_pem_x509_certificate(pebble.intermediate_pem())
    assert intermediate.issuer == root.subject


def test_pebble_stop_start(pebble: Pebble) -> None:
    pebble.stop()
    try:
        requests.get(pebble.directory_url, verify=str(pebble.ca_bundle), timeout=2)
        raise AssertionError("pebble still answers after stop()")
    except requests.ConnectionError:
        pass
    finally:
        pebble.start()
    assert requests.get(pebble.directory_url, verify=str(pebble.ca_bundle), timeout=5).ok


def test_mariadb_socket_and_tcp(mariadb: MariaDB) -> None:
    mariadb.reset()
    mariadb.execute("INSERT INTO domain (domain, description) VALUES (%s, %s)", ("a.test", "A"))
    mariadb.execute(
        "INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('b.test', 'a.test')"
    )
    mariadb.execute("INSERT INTO mta_sts (domain, mx) VALUES ('a.test', 'mail.a.test')")
    conn = mariadb.connect(tcp=True)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT domain, active, backupmx FROM domain")
        assert cur.fetchall() == (("a.test", 1, 0),)
        cur.execute("SELECT version, mode, max_age FROM mta_sts WHERE domain = 'a.test'")
        assert cur.fetchall() == (("STSv1", "enforce", 86400),)
    assert mariadb.query("SELECT target_domain FROM alias_domain") == [("a.test",)]
    mariadb.reset()
    assert mariadb.query("SELECT COUNT(*) FROM domain") == [(0,)]


def test_mariadb_stop_start(mariadb: MariaDB) -> None:
    mariadb.execute("INSERT INTO domain (domain) VALUES ('persist.test')")
    mariadb.stop()
    assert not mariadb.running()
    mariadb.start()
    assert mariadb.query("SELECT domain FROM domain WHERE domain = 'persist.test'")
    mariadb.reset()


def test_docker_service_restart_and_sighup(docker_world: DockerWorld) -> None:
    container = docker_world.run_service("worldsmoke", "postfix-mailcow")
    try:
        container.reload()
        assert container.status == "running"
        assert container.labels["com.docker.compose.project"] == "worldsmoke"
        assert container.labels["com.docker.compose.service"] == "postfix-mailcow"
        assert container.labels["com.docker.compose.container-number"] == "1"
        before = docker_world.started_at(container.id)
        container.restart(timeout=5)
        docker_world.wait_ready(container.id)
        assert docker_world.started_at(container.id) != before
        container.kill(signal="SIGHUP")
        docker_world.wait_reloads(container.id, 1)
        code, out = container.exec_run(["cat", "/tmp/reloads"])
        assert code == 0
        assert out.decode().split() == ["reload"]
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)


def test_world_bundle(world: World) -> None:
    assert world.pebble.http_port == world.nginx.port
    assert world.docker.docker_host.startswith("unix://")
