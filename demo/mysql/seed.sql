-- Demo database, part 3 of the init file (after database.sql and schema.sql): the demo's mail
-- domains; MTA-STS is active for the first one. Every statement is idempotent.
INSERT IGNORE INTO domain (domain, description) VALUES
    ('example.test', 'demo domain'),
    ('demo.test', 'second demo domain');
INSERT IGNORE INTO mta_sts (domain, mx) VALUES ('example.test', 'mail.example.test');
