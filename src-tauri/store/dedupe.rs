//! Which `X-Chatwoot-Delivery` keys are stored: an in-memory index over `deliveries.dedupe_key`.
//!
//! Chatwoot's keys are random UUIDs, so a unique index on them in SQLite puts every webhook's entry on some
//! random page of the index: a page written per webhook, in the WAL and again at the checkpoint (measured: a
//! third of the bytes the relay wrote per webhook). The column keeps the keys durably, without an index; this
//! map from a 64-bit hash of each key to its delivery is built from it at start and kept up to date by the
//! writer (the only place deliveries are inserted) and by whoever deletes deliveries.
//!
//! A hit is confirmed by reading the row by its primary key. When the row does not confirm it (deleted
//! meanwhile, or another key with the same hash), the key is looked up in the table itself, so neither a stale
//! entry nor a collision can make a new webhook a duplicate or let a repeat through.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use rusqlite::{Connection, OptionalExtension as _};

use crate::ids::DeliveryId;

#[derive(Debug, Default)]
pub struct DedupeKeys {
    hasher: RandomState,
    by_hash: HashMap<u64, DeliveryId>,
}

/// Undoes the entries a failed transaction added (see [`DedupeKeys::insert`]).
#[derive(Debug, Default)]
pub struct Undo(Vec<(u64, Option<DeliveryId>)>);

impl DedupeKeys {
    /// Every key stored in `deliveries`.
    ///
    /// # Errors
    /// The database failed.
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let mut keys = Self::default();
        let mut stmt =
            conn.prepare("SELECT id, dedupe_key FROM deliveries WHERE dedupe_key IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(1)?;
            let hash = keys.hash(&key);
            keys.by_hash.insert(hash, row.get(0)?);
        }
        Ok(keys)
    }

    /// The stored delivery that has `key`, if any.
    ///
    /// # Errors
    /// The database failed.
    pub fn find(&self, conn: &Connection, key: &str) -> rusqlite::Result<Option<DeliveryId>> {
        let Some(&id) = self.by_hash.get(&self.hash(key)) else {
            return Ok(None);
        };
        let stored: Option<Option<String>> = conn
            .prepare_cached("SELECT dedupe_key FROM deliveries WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()?;
        if stored.flatten().as_deref() == Some(key) {
            return Ok(Some(id));
        }
        conn.prepare_cached("SELECT id FROM deliveries WHERE dedupe_key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()
    }

    /// Records that delivery `id` was inserted with `key`, in a transaction not yet committed; `undo` takes it
    /// back if that transaction fails.
    pub fn insert(&mut self, key: &str, id: DeliveryId, undo: &mut Undo) {
        let hash = self.hash(key);
        undo.0.push((hash, self.by_hash.insert(hash, id)));
    }

    /// Takes back what a failed transaction inserted.
    pub fn undo(&mut self, undo: Undo) {
        for (hash, earlier) in undo.0.into_iter().rev() {
            match earlier {
                Some(id) => self.by_hash.insert(hash, id),
                None => self.by_hash.remove(&hash),
            };
        }
    }

    /// Forgets deleted deliveries' keys (after the delete committed). An entry that meanwhile points to a newer
    /// delivery with the same key stays.
    pub fn forget<'a>(&mut self, deleted: impl IntoIterator<Item = (DeliveryId, &'a str)>) {
        for (id, key) in deleted {
            let hash = self.hash(key);
            if self.by_hash.get(&hash) == Some(&id) {
                self.by_hash.remove(&hash);
            }
        }
        if self.by_hash.capacity() > 4 * self.by_hash.len().max(1024) {
            self.by_hash.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_hash.len()
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{temp_db, writer_connection};

    fn insert_row(conn: &Connection, key: Option<&str>) -> DeliveryId {
        conn.execute(
            "INSERT INTO deliveries (inbox_id, event, dedupe_key, next_attempt_at, received_at, updated_at)
             VALUES (7, 'message_created', ?1, 1, 1, 1)",
            [key],
        )
        .unwrap();
        DeliveryId(conn.last_insert_rowid())
    }

    #[tokio::test]
    async fn keys_are_loaded_found_undone_and_forgotten() {
        let (_pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let a = insert_row(&conn, Some("uuid-a"));
        insert_row(&conn, None);
        let mut keys = DedupeKeys::load(&conn).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.find(&conn, "uuid-a").unwrap(), Some(a));
        assert_eq!(keys.find(&conn, "uuid-b").unwrap(), None);

        // A failed transaction's keys are taken back.
        let mut undo = Undo::default();
        keys.insert("uuid-b", DeliveryId(99), &mut undo);
        keys.undo(undo);
        assert_eq!(keys.len(), 1);

        // Deleted: forgotten, unless the key was stored again meanwhile.
        conn.execute("DELETE FROM deliveries WHERE id = ?1", [a])
            .unwrap();
        assert_eq!(keys.find(&conn, "uuid-a").unwrap(), None, "stale entry");
        let again = insert_row(&conn, Some("uuid-a"));
        keys.insert("uuid-a", again, &mut Undo::default());
        keys.forget([(a, "uuid-a")]);
        assert_eq!(keys.find(&conn, "uuid-a").unwrap(), Some(again));
        keys.forget([(again, "uuid-a")]);
        assert_eq!(keys.len(), 0);
    }

    #[tokio::test]
    async fn an_entry_the_row_does_not_confirm_falls_back_to_the_table() {
        let (_pool, dir) = temp_db().await;
        let conn = writer_connection(&dir);
        let a = insert_row(&conn, Some("uuid-a"));
        let b = insert_row(&conn, Some("uuid-b"));
        let mut keys = DedupeKeys::load(&conn).unwrap();
        // As if "uuid-a" hashed like "uuid-b" and b's entry replaced a's.
        let hash = keys.hash("uuid-a");
        keys.by_hash.insert(hash, b);
        assert_eq!(keys.find(&conn, "uuid-a").unwrap(), Some(a));
    }
}
