//! Stored responses, so a Responses API client can continue a conversation
//! by `previous_response_id`: each stored response keeps its conversation
//! (everything but the instructions, which OpenAI does not carry over either)
//! and its answer, for its agent only, for `ttl`, and the store holds at most
//! `max_bytes` (the oldest go first). It is SQLite in a file beside the
//! ledger's: the ledger holds its own file exclusively, and a conversation is
//! not money, so it must not wait on the ledger's commits or they on it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrysalis_services::Message;
use rusqlite::{params, Connection, OptionalExtension};

/// The largest conversation stored: past it, a response is not stored (and
/// its id is refused later, saying so).
pub const MAX_CONVERSATION_BYTES: usize = 4 << 20;

/// Responses kept for `previous_response_id`.
pub struct ResponseStore {
    connection: Mutex<Store>,
    ttl: Duration,
    max_bytes: u64,
}

struct Store {
    connection: Connection,
    /// Bytes of the conversations kept, so a put looks for what to drop only past the bound.
    bytes: i64,
}

impl std::fmt::Debug for ResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The store's file for the ledger at `ledger`: `<ledger>.responses`.
pub fn path_beside(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".responses");
    PathBuf::from(name)
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl ResponseStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, ttl: Duration, max_bytes: u64) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS responses (
                 id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, created_ms INTEGER NOT NULL,
                 bytes INTEGER NOT NULL, conversation TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS responses_created ON responses (created_ms);",
        )?;
        let bytes = connection.query_row("SELECT COALESCE(SUM(bytes), 0) FROM responses", [], |r| r.get(0))?;
        Ok(Self {
            connection: Mutex::new(Store { connection, bytes }),
            ttl,
            max_bytes,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `conversation` as response `id` of `agent`; a conversation past
    /// [`MAX_CONVERSATION_BYTES`] is not kept. Makes room as it goes.
    pub fn put<M: serde::Serialize>(&self, id: &str, agent: &str, conversation: &[M]) -> rusqlite::Result<bool> {
        let json = serde_json::to_string(conversation).unwrap_or_default();
        if json.len() > MAX_CONVERSATION_BYTES {
            return Ok(false);
        }
        let mut store = self.lock();
        let now = now_ms();
        let expired = now - i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        // The index finds the expired ones, at the front: nothing else is read.
        let gone: i64 = store.connection.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM responses WHERE created_ms <= ?1",
            [expired],
            |r| r.get(0),
        )?;
        if gone > 0 {
            store
                .connection
                .execute("DELETE FROM responses WHERE created_ms <= ?1", [expired])?;
            store.bytes -= gone;
        }
        store.connection.execute(
            "INSERT INTO responses (id, agent_id, created_ms, bytes, conversation) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, agent, now, json.len() as i64, json],
        )?;
        store.bytes += json.len() as i64;
        let max = i64::try_from(self.max_bytes).unwrap_or(i64::MAX);
        // Past the size bound, the oldest (first inserted) go, a few at a time, until it holds again.
        while store.bytes > max {
            let oldest: Vec<(String, i64)> = {
                let mut statement = store
                    .connection
                    .prepare_cached("SELECT id, bytes FROM responses ORDER BY rowid LIMIT 16")?;
                let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if oldest.is_empty() {
                store.bytes = 0;
                break;
            }
            for (old, bytes) in oldest {
                store
                    .connection
                    .execute("DELETE FROM responses WHERE id = ?1", [&old])?;
                store.bytes -= bytes;
                if store.bytes <= max {
                    break;
                }
            }
        }
        Ok(true)
    }

    /// The conversation of response `id`, if `agent` stored it and it is
    /// still kept.
    pub fn get(&self, id: &str, agent: &str) -> rusqlite::Result<Option<Vec<Message>>> {
        let expired = now_ms() - i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let json: Option<String> = self
            .lock()
            .connection
            .query_row(
                "SELECT conversation FROM responses WHERE id = ?1 AND agent_id = ?2 AND created_ms > ?3",
                params![id, agent, expired],
                |row| row.get(0),
            )
            .optional()?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }
}

#[cfg(test)]
mod tests {
    use chrysalis_services::Role;

    use super::*;

    fn store(ttl: Duration, max_bytes: u64) -> ResponseStore {
        let path = std::env::temp_dir().join(format!("chrysalis-responses-{}-{}.db", std::process::id(), max_bytes));
        let _ = std::fs::remove_file(&path);
        ResponseStore::open(&path, ttl, max_bytes).unwrap()
    }

    #[test]
    fn a_response_is_found_by_its_agent_only_and_the_oldest_go_past_the_size_bound() {
        let store = store(Duration::from_secs(3600), 1000);
        let said = |text: &str| vec![Message::new(Role::User, text)];
        assert!(store.put("resp_a", "alice", &said("first")).unwrap());
        assert_eq!(store.get("resp_a", "alice").unwrap().unwrap()[0].text(), "first");
        assert!(
            store.get("resp_a", "mallory").unwrap().is_none(),
            "another agent cannot read it"
        );
        assert!(store.get("resp_missing", "alice").unwrap().is_none());
        for n in 0..20 {
            store
                .put(&format!("resp_{n}"), "alice", &said(&"x".repeat(90)))
                .unwrap();
        }
        assert!(
            store.get("resp_a", "alice").unwrap().is_none(),
            "the oldest went to make room"
        );
        assert!(store.get("resp_19", "alice").unwrap().is_some(), "the newest stays");
        let huge = said(&"y".repeat(MAX_CONVERSATION_BYTES + 1));
        assert!(!store.put("resp_huge", "alice", &huge).unwrap(), "too large to keep");
    }

    #[test]
    fn an_expired_response_is_gone() {
        let store = store(Duration::ZERO, 1 << 20);
        store
            .put("resp_old", "alice", &[Message::new(Role::User, "hi")])
            .unwrap();
        assert!(store.get("resp_old", "alice").unwrap().is_none());
    }
}
