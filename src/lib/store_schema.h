/*
 * store_schema.h - the schema steps both store backends apply
 * (store_schema.c).  Internal to the store.
 */
#ifndef CF_STORE_SCHEMA_H
#define CF_STORE_SCHEMA_H

typedef struct cf_schema_step {
	const char *sqlite;     /* SQLite's SQL of the step */
	const char *postgres;   /* PostgreSQL's SQL of the same step */
} cf_schema_step;

/* Step i (0-based) brings a database from version i to i + 1. */
extern const cf_schema_step cf_schema_steps[];
/* The number of steps: the version this program's schema is at. */
extern const int cf_schema_version;

#endif
