-- mailcow's tables that acme-sidecar reads (the columns it uses and their neighbours), the one
-- definition shared by the demo database (Dockerfile: run at every start, after database.sql)
-- and the test world (tests/world/mariadb.py). Only CREATE TABLE statements, each idempotent,
-- in the current database; no semicolon inside a statement (the test world splits on them).
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
