//! Copies of the brands' logs as the checker reads them (`GET /v1/log/entries`), with what
//! it looks up in them: entries by type and id, and holds with the entries that resolved them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::BrandInfo;

/// One log, read entry by entry: each entry's text and its decoded JSON.
#[derive(Debug, Default, Clone)]
pub struct LogCopy {
    pub entries: Vec<(String, Value)>,
}

impl LogCopy {
    /// Reads the entries logged since the last call.
    pub async fn refresh(&mut self, b: &BrandInfo) -> Result<(), String> {
        let c = b.client();
        let size = c
            .verified_checkpoint()
            .await
            .map_err(|e| format!("{}'s checkpoint: {e}", b.brand))?
            .0
            .size;
        while (self.entries.len() as u64) < size {
            let start = self.entries.len() as u64;
            let end = size.min(start + sdk::types::LOG_ENTRIES_PAGE_MAX);
            let page = c
                .log_entries(start, end)
                .await
                .map_err(|e| format!("{}'s entries {start}..{end}: {e}", b.brand))?;
            if page.is_empty() {
                return Err(format!("{} served no entries at {start}", b.brand));
            }
            for e in page {
                if e.index != self.entries.len() as u64 {
                    return Err(format!(
                        "{} served entry {} where {} was asked",
                        b.brand,
                        e.index,
                        self.entries.len()
                    ));
                }
                let v: Value = serde_json::from_str(&e.entry)
                    .map_err(|x| format!("{}'s entry {} is not JSON: {x}", b.brand, e.index))?;
                self.entries.push((e.entry, v));
            }
        }
        Ok(())
    }

    /// Entries of type `kind`, with their index.
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (u64, &'a Value)> + 'a {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, (_, v))| v["type"] == kind)
            .map(|(i, (_, v))| (i as u64, v))
    }

    /// The index of the entry with id `id`.
    pub fn index_of(&self, id: &str) -> Option<u64> {
        self.entries
            .iter()
            .position(|(_, v)| v["id"] == id)
            .map(|i| i as u64)
    }

    /// The entries that mention `id` (as their id or in their body), as `index type id`.
    pub fn mentions(&self, id: &str) -> Vec<String> {
        let quoted = format!("\"{id}\"");
        let derived = format!(".{id}\"");
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| t.contains(&quoted) || t.contains(&derived))
            .map(|(i, (_, v))| format!("{i} {} {}", v["type"], v["id"]))
            .collect()
    }

    /// Every hold in the log by id, with the entries that resolved it.
    pub fn holds(&self) -> BTreeMap<String, HoldInLog> {
        let mut holds: BTreeMap<String, HoldInLog> = self
            .of_type("hold")
            .map(|(i, v)| {
                (
                    v["id"].as_str().unwrap_or_default().to_owned(),
                    HoldInLog {
                        index: i,
                        expires_at: v["body"]["expires_at"].as_u64().unwrap_or(0),
                        ends: Vec::new(),
                    },
                )
            })
            .collect();
        for kind in ["post", "void"] {
            for (i, v) in self.of_type(kind) {
                let hold = v["body"]["hold"].as_str().unwrap_or_default();
                if let Some(h) = holds.get_mut(hold) {
                    h.ends.push(Resolution {
                        index: i,
                        kind,
                        id: v["id"].as_str().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        holds
    }
}

/// A hold as a log shows it.
#[derive(Debug, Clone)]
pub struct HoldInLog {
    pub index: u64,
    pub expires_at: u64,
    /// Every `post` or `void` naming it, in log order: exactly one once it is resolved.
    pub ends: Vec<Resolution>,
}

/// An entry that resolved a hold.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub index: u64,
    /// `post` or `void`.
    pub kind: &'static str,
    pub id: String,
}

/// Reads every brand's whole log.
pub async fn read_logs(brands: &[BrandInfo], logs: &mut [LogCopy]) {
    for (b, l) in brands.iter().zip(logs.iter_mut()) {
        l.refresh(b)
            .await
            .unwrap_or_else(|e| panic!("reading the logs: {e}"));
    }
}
