-- Runs once, when the postgres container starts on an empty data folder (docker-entrypoint-initdb.d),
-- as POSTGRES_USER (imp): the MLflow server's tracking and registry database, beside IMP's own (POSTGRES_DB).
CREATE DATABASE mlflow OWNER imp;
