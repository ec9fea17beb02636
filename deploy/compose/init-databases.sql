-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
-- Each Roster service owns its own database and role; no service can read another's tables.
-- The passwords are for the local compose stack only.

CREATE ROLE roster_identity LOGIN PASSWORD 'roster_identity';
CREATE DATABASE roster_identity OWNER roster_identity;
REVOKE ALL ON DATABASE roster_identity FROM PUBLIC;

CREATE ROLE roster_imports LOGIN PASSWORD 'roster_imports';
CREATE DATABASE roster_imports OWNER roster_imports;
REVOKE ALL ON DATABASE roster_imports FROM PUBLIC;

CREATE ROLE roster_notification LOGIN PASSWORD 'roster_notification';
CREATE DATABASE roster_notification OWNER roster_notification;
REVOKE ALL ON DATABASE roster_notification FROM PUBLIC;
