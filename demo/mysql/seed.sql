-- Demo database, run at every start of mysql (mariadbd --init-file): mailcow's database, a
-- read-only user for acme-sidecar, the three tables the sidecar reads, and the demo domains.
-- Every statement is idempotent.
CREATE DATABASE IF NOT EXISTS mailcow CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'mailcow'@'localhost' IDENTIFIED BY 'acme-demo';
GRANT SELECT ON mailcow.* TO 'mailcow'@'localhost';
USE mailcow;
CREATE TABLE IF NOT EXISTS domain (
    domain VARCHAR(255) NOT NULL PRIMARY KEY,
    description VARCHAR(255),
    backupmx TINYINT(1) NOT NULL DEFAULT 0,
    active TINYINT(1) NOT NULL DEFAULT 1,
    relay_all_recipients TINYINT(1) NOT NULL DEFAULT 0,
    relay_unknown_only TINYINT(1) NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS alias_domain (
    alias_domain VARCHAR(255) NOT NULL PRIMARY KEY,
    target_domain VARCHAR(255) NOT NULL,
    active TINYINT(1) NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS mta_sts (
    id BIGINT NOT NULL AUTO_INCREMENT UNIQUE,
    domain VARCHAR(255) NOT NULL PRIMARY KEY,
    version VARCHAR(255) NOT NULL DEFAULT 'STSv1',
    mode VARCHAR(255) NOT NULL DEFAULT 'enforce',
    mx VARCHAR(255) NOT NULL DEFAULT '',
    max_age INT NOT NULL DEFAULT 86400,
    active TINYINT(1) NOT NULL DEFAULT 1);
-- the demo's mail domains; MTA-STS is active for the first one
INSERT IGNORE INTO domain (domain, description) VALUES
    ('example.test', 'demo domain'),
    ('demo.test', 'second demo domain');
INSERT IGNORE INTO mta_sts (domain, mx) VALUES ('example.test', 'mail.example.test');
