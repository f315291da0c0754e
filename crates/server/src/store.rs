//! Durable state in SQLite: rooms and chat history. Schema changes are numbered migrations applied at open.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use parley_proto::ChatMessage;
use rusqlite::{params, Connection};

/// Each entry moves the schema one version up; `PRAGMA user_version` records how far a database is.
const MIGRATIONS: &[&str] = &[
    // 1: rooms and chat.
    "CREATE TABLE rooms (
        name TEXT PRIMARY KEY NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE chat_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room TEXT NOT NULL,
        author_id INTEGER NOT NULL,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL
    );
    CREATE INDEX chat_messages_by_room ON chat_messages (room, id);",
];

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join("parley.sqlite3");
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Store::with_connection(conn).with_context(|| format!("preparing {}", path.display()))
    }

    fn with_connection(mut conn: Connection) -> Result<Store> {
        // WAL + FULL: a message is on disk before it is acknowledged, even if the process is killed.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "the database is from a newer parley (schema {version}, this one knows {})",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent; keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn rooms(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM rooms ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    pub fn add_room(&self, name: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO rooms (name, created_at_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        Ok(())
    }

    /// Stores a message and returns it with its id. Returns only once it is durable.
    pub fn add_chat(
        &self,
        room: &str,
        author_id: u64,
        author: &str,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<ChatMessage> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO chat_messages (room, author_id, author, text, sent_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room, author_id as i64, author, text, sent_at_ms],
        )?;
        Ok(ChatMessage {
            id: conn.last_insert_rowid(),
            room: room.to_string(),
            author_id,
            author: author.to_string(),
            text: text.to_string(),
            sent_at_ms,
        })
    }

    /// Up to `limit` messages of `room` older than `before`, newest first, and whether older ones exist.
    pub fn history(
        &self,
        room: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool)> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, room, author_id, author, text, sent_at_ms FROM chat_messages
             WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let mut messages = stmt
            .query_map(
                params![room, before.unwrap_or(i64::MAX), i64::from(limit) + 1],
                |r| {
                    Ok(ChatMessage {
                        id: r.get(0)?,
                        room: r.get(1)?,
                        author_id: r.get::<_, i64>(2)? as u64,
                        author: r.get(3)?,
                        text: r.get(4)?,
                        sent_at_ms: r.get(5)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok((messages, has_more))
    }

    #[cfg(test)]
    fn in_memory() -> Store {
        Store::with_connection(Connection::open_in_memory().unwrap()).unwrap()
    }

    #[cfg(test)]
    fn message_count(&self) -> i64 {
        self.conn()
            .query_row("SELECT COUNT(*) FROM chat_messages", [], |r| r.get(0))
            .unwrap()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pages_newest_first_with_exact_boundaries() {
        let store = Store::in_memory();
        for i in 1..=250 {
            store.add_chat("a", 1, "Ann", &format!("m{i}"), i).unwrap();
            store
                .add_chat("b", 2, "Bo", &format!("other{i}"), i)
                .unwrap();
        }
        let (page1, more1) = store.history("a", None, 100).unwrap();
        assert_eq!(page1.len(), 100);
        assert!(more1);
        assert_eq!(page1[0].text, "m250");
        assert_eq!(page1[99].text, "m151");
        let (page2, more2) = store.history("a", Some(page1[99].id), 100).unwrap();
        assert_eq!(
            (page2[0].text.as_str(), page2[99].text.as_str(), more2),
            ("m150", "m51", true)
        );
        let (page3, more3) = store.history("a", Some(page2[99].id), 100).unwrap();
        assert_eq!(page3.len(), 50);
        assert!(!more3, "the last page says so");
        assert_eq!(page3[49].text, "m1");
        assert!(page1
            .iter()
            .chain(&page2)
            .chain(&page3)
            .all(|m| m.room == "a"));
        // Exactly a page left: no phantom "more".
        let (exact, more) = store.history("a", Some(page3[0].id + 1), 50).unwrap();
        assert_eq!((exact.len(), more), (50, false));
        assert_eq!(store.message_count(), 500);
    }

    #[test]
    fn survives_reopen_and_keeps_text_verbatim() {
        let dir = std::env::temp_dir().join(format!("parley-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "<img src=x onerror=alert(1)> & 'quotes' \u{1F600}";
        {
            let store = Store::open(&dir).unwrap();
            store.add_room("band", 1).unwrap();
            store.add_chat("band", 7, "Ann", text, 42).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.rooms().unwrap(), vec!["band".to_string()]);
        let (msgs, _) = store.history("band", None, 10).unwrap();
        assert_eq!(msgs[0].text, text);
        assert_eq!(msgs[0].sent_at_ms, 42);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
