-- Settings the app keeps for itself (the desktop's generated admin password hash, …), one row per key.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
