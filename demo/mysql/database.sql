-- Demo database, part 1 of the init file (Dockerfile: database.sql, schema.sql, seed.sql):
-- mailcow's database and a read-only user for acme-sidecar. Every statement is idempotent.
CREATE DATABASE IF NOT EXISTS mailcow CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'mailcow'@'localhost' IDENTIFIED BY 'acme-demo';
GRANT SELECT ON mailcow.* TO 'mailcow'@'localhost';
USE mailcow;
