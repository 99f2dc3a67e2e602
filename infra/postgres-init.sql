-- One PostgreSQL for both servers, a database each.
CREATE DATABASE mlflow OWNER ganops;
CREATE DATABASE prefect OWNER ganops;
