//! The etcd v3 backend, for control planes that outgrow one machine: etcd's own MVCC revisions
//! are the store's revisions, so resourceVersions, consistent paging, compare-and-swap, watches
//! and compaction are etcd's, not emulated. Each operation is one etcd request (a Txn for the
//! conditional writes).

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions};

use crate::{Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchStream};

/// Clones share one gRPC channel.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// Prepended to every key, so several berth clusters (or tests) can share one etcd.
    prefix: String,
}

fn backend(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {context}: {e}"))
}

/// The first key after every key that starts with `prefix` ("\0": the whole keyspace).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to the endpoints (`http://127.0.0.1:2379`, …); `key_prefix` namespaces the keys.
    pub async fn connect(endpoints: &[&str], key_prefix: &str) -> Result<EtcdStore> {
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.trim_start_matches("etcd://").to_string()).collect();
        let options = etcd_client::ConnectOptions::new().with_connect_timeout(std::time::Duration::from_secs(5));
        let client = Client::connect(&endpoints, Some(options)).await.map_err(|e| backend(&format!("connecting to {}", endpoints.join(",")), e))?;
        let store = EtcdStore { client, prefix: key_prefix.to_string() };
        // Fail now, with the endpoint named, rather than on the first request.
        store.current_revision().await.map_err(|e| backend(&format!("reaching {}", endpoints.join(",")), e))?;
        Ok(store)
    }

    fn full(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    /// The key range of a prefix: etcd refuses an empty key, so the empty prefix is written as
    /// its "every key" range ("\0" to "\0").
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let full = self.full(prefix);
        if full.is_empty() {
            (vec![0], vec![0])
        } else {
            let end = prefix_end(&full);
            (full, end)
        }
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv.key_str().map_err(|e| backend("a stored key is not UTF-8", e))?;
        Ok(KeyValue {
            key: key.strip_prefix(&self.prefix).unwrap_or(key).to_string(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// Maps etcd's errors for compacted and future revisions onto the store's.
    async fn revision_error(&self, e: etcd_client::Error, requested: Revision, context: &str) -> StoreError {
        let text = e.to_string();
        if text.contains("required revision has been compacted") {
            let compacted = self.compacted_revision().await.unwrap_or(requested + 1);
            StoreError::Compacted { requested, compacted }
        } else if text.contains("required revision is a future revision") {
            let current = self.current_revision().await.unwrap_or(0);
            StoreError::FutureRevision { requested, current }
        } else {
            backend(context, e)
        }
    }

    /// The key's current mod_revision for a failed compare, or NotFound.
    fn current_of(&self, key: &str, resp: &etcd_client::TxnResponse) -> StoreError {
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        });
        match current {
            Some(current) => StoreError::Conflict { key: key.to_string(), expected: 0, current },
            None => StoreError::NotFound { key: key.to_string() },
        }
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| h.revision()).ok_or_else(|| backend("reply", "no header"))
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let (start, end) = self.range("");
        let resp = self.client.clone().get(start, Some(GetOptions::new().with_range(end).with_count_only())).await.map_err(|e| backend("reading the revision", e))?;
        header_revision(resp.header())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // etcd reports its compaction horizon to a watch that starts below it.
        let (mut watcher, mut stream) = self
            .client
            .clone()
            .watch(self.full("\u{0}compaction-probe"), Some(WatchOptions::new().with_start_revision(1)))
            .await
            .map_err(|e| backend("probing the compaction revision", e))?;
        let compacted = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(resp))) => resp.compact_revision(),
            Ok(Ok(None)) => 0,
            Ok(Err(e)) => return Err(backend("probing the compaction revision", e)),
            Err(_) => return Err(backend("probing the compaction revision", "no answer in 5 s")),
        };
        let _ = watcher.cancel().await;
        Ok(compacted)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.client.clone().get(self.full(key), None).await.map_err(|e| backend(&format!("reading {key}"), e))?;
        resp.kvs().first().map(|kv| self.kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListResult> {
        // gRPC replies are capped (4 MiB by default): large lists are read in pages at one
        // revision and joined.
        const PAGE: usize = 1000;
        let wanted = options.limit;
        let mut opts = ListOptions { limit: Some(wanted.map_or(PAGE, |w| w.min(PAGE))), ..options.clone() };
        let mut out = self.list_page(prefix, &opts).await?;
        while out.more && wanted.is_none_or(|w| out.items.len() < w) {
            opts.revision = out.revision;
            opts.start_after = out.items.last().map(|kv| kv.key.clone());
            opts.limit = Some(wanted.map_or(PAGE, |w| (w - out.items.len()).min(PAGE)));
            let next = self.list_page(prefix, &opts).await?;
            out.items.extend(next.items);
            out.more = next.more;
        }
        Ok(out)
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let (start, end) = self.range(prefix);
        let resp = self
            .client
            .clone()
            .get(start, Some(GetOptions::new().with_range(end).with_count_only()))
            .await
            .map_err(|e| backend(&format!("counting {prefix}"), e))?;
        Ok(resp.count().max(0) as u64)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let k = self.full(key);
        let txn = Txn::new().when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(k, value.clone(), None)]);
        let resp = self.client.clone().txn(txn).await.map_err(|e| backend(&format!("creating {key}"), e))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.to_string() });
        }
        let rev = header_revision(resp.header())?;
        Ok(KeyValue { key: key.to_string(), value, create_revision: rev, mod_revision: rev })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let k = self.full(key);
        let txn = Txn::new()
            .when([Compare::version(k.clone(), CompareOp::Greater, 0), Compare::mod_revision(k.clone(), CompareOp::Equal, expected)])
            .and_then([TxnOp::put(k.clone(), value.clone(), Some(etcd_client::PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.client.clone().txn(txn).await.map_err(|e| backend(&format!("updating {key}"), e))?;
        if !resp.succeeded() {
            return Err(match self.current_of(key, &resp) {
                StoreError::Conflict { key, current, .. } => StoreError::Conflict { key, expected, current },
                other => other,
            });
        }
        let rev = header_revision(resp.header())?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or(rev);
        Ok(KeyValue { key: key.to_string(), value, create_revision, mod_revision: rev })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let k = self.full(key);
        let mut compares = vec![Compare::version(k.clone(), CompareOp::Greater, 0)];
        if let Some(exp) = expected {
            compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, exp));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(k.clone(), Some(etcd_client::DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)]);
        let resp = self.client.clone().txn(txn).await.map_err(|e| backend(&format!("deleting {key}"), e))?;
        if !resp.succeeded() {
            return Err(match self.current_of(key, &resp) {
                StoreError::Conflict { key, current, .. } => StoreError::Conflict { key, expected: expected.unwrap_or(0), current },
                other => other,
            });
        }
        let rev = header_revision(resp.header())?;
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().cloned(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| StoreError::NotFound { key: key.to_string() })?;
        let mut kv = self.kv(&prev)?;
        kv.mod_revision = rev;
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (full, end) = self.range(prefix);
        let mut opts = WatchOptions::new().with_range(end).with_prev_key();
        if after > 0 {
            opts = opts.with_start_revision(after + 1);
        }
        let (watcher, mut stream) = self.client.clone().watch(full, Some(opts)).await.map_err(|e| backend(&format!("watching {prefix}"), e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event>>(256);
        let this = self.clone();
        tokio::spawn(async move {
            // The watcher lives as long as the stream is read; dropping it cancels the watch.
            let _watcher = watcher;
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    () = tx.closed() => return,
                };
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(backend("watching", e))).await;
                        return;
                    }
                };
                if resp.compact_revision() > 0 {
                    let _ = tx.send(Err(StoreError::Compacted { requested: after + 1, compacted: resp.compact_revision() })).await;
                    return;
                }
                if resp.canceled() {
                    let _ = tx.send(Err(backend("watching", format!("canceled by etcd: {}", resp.cancel_reason())))).await;
                    return;
                }
                for ev in resp.events() {
                    let converted = match this.event(ev) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    if tx.send(Ok(converted)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.client.clone().compact(revision, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("required revision has been compacted") => Ok(()),
            Err(e) => Err(self.revision_error(e, revision, "compacting").await),
        }
    }
}

impl EtcdStore {
    /// One page of a list, as one etcd range request.
    async fn list_page(&self, prefix: &str, options: &ListOptions) -> Result<ListResult> {
        let (first, end) = self.range(prefix);
        let start = match &options.start_after {
            // The smallest key after `start_after`.
            Some(after) => {
                let mut k = self.full(after);
                k.push(0);
                k
            }
            None => first,
        };
        let mut opts = GetOptions::new().with_range(end);
        if options.revision > 0 {
            opts = opts.with_revision(options.revision);
        }
        if let Some(limit) = options.limit {
            opts = opts.with_limit(limit as i64);
        }
        let resp = match self.client.clone().get(start, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.revision_error(e, options.revision, &format!("listing {prefix}")).await),
        };
        let revision = if options.revision > 0 { options.revision } else { header_revision(resp.header())? };
        let items = resp.kvs().iter().map(|kv| self.kv(kv)).collect::<Result<Vec<_>>>()?;
        Ok(ListResult { items, revision, more: resp.more() })
    }

    fn event(&self, ev: &etcd_client::Event) -> Result<Event> {
        let kv = ev.kv().ok_or_else(|| backend("watching", "an event without a key"))?;
        let kv = self.kv(kv)?;
        Ok(match ev.event_type() {
            EventType::Put if kv.create_revision == kv.mod_revision => Event::Created(kv),
            EventType::Put => {
                let prev = match ev.prev_kv() {
                    Some(p) => self.kv(p)?,
                    // etcd omits the previous value when it is compacted away.
                    None => KeyValue { key: kv.key.clone(), value: Vec::new(), create_revision: kv.create_revision, mod_revision: 0 },
                };
                Event::Updated { kv, prev }
            }
            EventType::Delete => {
                let mut deleted = match ev.prev_kv() {
                    Some(p) => self.kv(p)?,
                    None => KeyValue { key: kv.key.clone(), value: Vec::new(), create_revision: 0, mod_revision: 0 },
                };
                deleted.mod_revision = kv.mod_revision;
                Event::Deleted(deleted)
            }
        })
    }
}
