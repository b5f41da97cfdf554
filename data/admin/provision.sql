-- The application role and what the workbook database needs, run as a superuser inside that database
-- once it exists: by workbook_utils/provision.py (embedded server) and data/initdb.sh (docker).
-- (In a folder of its own: the postgres image would run a top-level .sql file of data/ by itself.)
-- The demos connect as the ordinary role `workbook`, the way an application does.
-- CREATEROLE: notebook 01 makes a role with a CONNECTION LIMIT; pg_monitor: read pg_stat_* in full;
-- pg_signal_backend: end the sessions of its own demos. Every statement may run again (setup() runs it
-- each time, so a role provisioned by an older release gets what a newer one grants).
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'workbook') THEN
        CREATE ROLE workbook LOGIN CREATEDB CREATEROLE;
    END IF;
    EXECUTE format('ALTER DATABASE %I OWNER TO workbook', current_database());
END $$;
GRANT pg_monitor, pg_signal_backend TO workbook;
-- Notebook 03 lowers these for its own session to show slow-query logging (PostgreSQL 15+ can grant that).
DO $$ BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE 'GRANT SET ON PARAMETER log_min_duration_statement TO workbook';
        EXECUTE 'GRANT SET ON PARAMETER log_parameter_max_length TO workbook';  -- 08: the server log, redacted
        IF current_setting('auto_explain.log_min_duration', true) IS NOT NULL THEN  -- preloaded
            EXECUTE 'GRANT SET ON PARAMETER auto_explain.log_min_duration TO workbook';
        END IF;
    END IF;
END $$;
GRANT ALL ON SCHEMA public TO workbook;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
