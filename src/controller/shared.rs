//! One watch per kind, shared. Every controller and cache that follows MatrixUsers (or links) is fed from
//! the same watch and the same cache, instead of each opening its own: four MatrixUser watches meant four
//! copies of every object in memory and four full lists at each start.
//!
//! kube-runtime's own shared streams (`ReflectHandle`) are not used: they hand on objects by looking them
//! up in the cache when the subscriber gets to them, and an object deleted in between leaves that
//! subscriber waiting forever (it returns `Pending` without a wake-up). Here the object itself is handed on.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

/// Events a subscriber may fall behind by before the watch waits for it.
const BUFFER: usize = 1024;

/// What of an object its own controller reacts to (see `Changes`).
pub type Fingerprint<K> = fn(&K) -> u64;

/// The generation and whether the object is being deleted: what changes when a person (or GitOps) edits the
/// spec or deletes the object, and not when a controller writes the status or its finalizer. The pass that
/// adds our finalizer goes on to apply the object (`status::reconcile_finalized`): the patch's event starting
/// a second pass cost a MatrixUser's Synapse reads twice. A finalizer stripped by hand comes back at the
/// object's next pass (see `status::finalized`).
pub fn generation_fingerprint<K: Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    fingerprint_of(&(meta.generation, meta.deletion_timestamp.is_some()))
}

/// kubectl's copy of the last object it applied: a second copy of the spec nobody here reads.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads before an object enters a cache: the API server's field ownership
/// records (`managedFields`: a tree of maps per manager, and each object has three or four managers once its
/// finalizer and status are written, which made up most of the 160 MiB a 10,000-user cache took) and kubectl's
/// last-applied copy. Status writes are server-side applies by name and finalizers JSON patches, neither of
/// which sends the cached object back, so nothing is lost on the server.
pub fn trim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// A stable hash within the process.
pub fn fingerprint_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Passes an object on only when its fingerprint differs from the last one this subscriber saw, so that
/// a controller's own status write does not start another pass of the same controller.
pub struct Changes<K> {
    fingerprint: Fingerprint<K>,
    seen: HashMap<String, u64>,
}

impl<K: Resource> Changes<K> {
    pub fn new(fingerprint: Fingerprint<K>) -> Self {
        Self { fingerprint, seen: HashMap::new() }
    }

    /// Whether an applied (or listed) object is news.
    pub fn applied(&mut self, obj: &K) -> bool {
        let now = (self.fingerprint)(obj);
        self.seen.insert(key(obj), now) != Some(now)
    }

    /// Forgets a deleted object: a reconcile of what is gone has nothing to do.
    pub fn deleted(&mut self, obj: &K) {
        self.seen.remove(&key(obj));
    }

    /// After a (re)list: forgets objects that went away while the watch was down.
    pub fn keep_only(&mut self, listed: &[Arc<K>]) {
        let present: std::collections::HashSet<String> = listed.iter().map(|o| key(&**o)).collect();
        self.seen.retain(|k, _| present.contains(k));
    }
}

fn key<K: Resource>(obj: &K) -> String {
    obj.uid().unwrap_or_else(|| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()))
}

struct Subscriber<K> {
    tx: mpsc::Sender<Arc<K>>,
    changes: Option<Changes<K>>,
}

/// A watch, its cache, and the subscribers it feeds. Build it, take the cache and the subscriptions, then
/// spawn `run`.
pub struct SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    subscribers: Vec<Subscriber<K>>,
}

impl<K> Default for SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    fn default() -> Self {
        Self { writer: Writer::default(), subscribers: Vec::new() }
    }
}

impl<K> SharedWatch<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// The cache this watch keeps.
    pub fn store(&self) -> Store<K> {
        self.writer.as_reader()
    }

    /// Every applied or deleted object, and every object again after each (re)list.
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.add(None)
    }

    /// Applied objects whose `fingerprint` changed since this subscriber last saw them.
    pub fn subscribe_changes(&mut self, fingerprint: Fingerprint<K>) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.add(Some(Changes::new(fingerprint)))
    }

    fn add(&mut self, changes: Option<Changes<K>>) -> mpsc::Receiver<Arc<K>> {
        let (tx, rx) = mpsc::channel(BUFFER);
        self.subscribers.push(Subscriber { tx, changes });
        rx
    }

    /// Drives the watch: each event goes into the cache, then to every subscriber in turn (one that falls
    /// behind holds the others back, as with kube's shared streams). `listed` turns true once the cache
    /// holds a complete list.
    pub async fn run(
        mut self,
        events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
        listed: Option<watch::Sender<bool>>,
    ) {
        let store = self.writer.as_reader();
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed; retrying");
                    continue;
                }
            };
            self.writer.apply_watcher_event(&event);
            match event {
                watcher::Event::Apply(obj) => {
                    let stored = store.get(&ObjectRef::from_obj(&obj)).unwrap_or_else(|| Arc::new(obj));
                    self.send(&stored, false).await;
                }
                watcher::Event::Delete(obj) => self.send(&Arc::new(obj), true).await,
                watcher::Event::InitDone => {
                    if let Some(listed) = &listed {
                        listed.send_replace(true);
                    }
                    let all = store.state();
                    for sub in &mut self.subscribers {
                        if let Some(changes) = &mut sub.changes {
                            changes.keep_only(&all);
                        }
                    }
                    for obj in &all {
                        self.send(obj, false).await;
                    }
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
    }

    async fn send(&mut self, obj: &Arc<K>, deleted: bool) {
        for sub in &mut self.subscribers {
            let news = match (&mut sub.changes, deleted) {
                (None, _) => true,
                (Some(changes), true) => {
                    changes.deleted(obj);
                    false
                }
                (Some(changes), false) => changes.applied(obj),
            };
            // A subscriber gone (its controller stopped) is no reason to stop feeding the others.
            if news {
                let _ = sub.tx.send(obj.clone()).await;
            }
        }
    }
}

/// One stream handed on to `n` subscribers, without a cache: the Secret watch (only names matter there, and
/// a cache would hold every Secret of the namespace). A subscriber that falls behind holds the others back.
pub fn fan_out<T: Clone + Send + 'static>(
    input: impl Stream<Item = T> + Send + 'static,
    n: usize,
) -> (Vec<mpsc::Receiver<T>>, impl std::future::Future<Output = ()> + Send + 'static) {
    let (mut txs, rxs): (Vec<mpsc::Sender<T>>, Vec<mpsc::Receiver<T>>) = (0..n).map(|_| mpsc::channel(BUFFER)).unzip();
    let run = async move {
        futures::pin_mut!(input);
        while let Some(item) = input.next().await {
            for tx in &mut txs {
                // A subscriber gone (its controller stopped) is no reason to stop feeding the others.
                let _ = tx.send(item.clone()).await;
            }
        }
    };
    (rxs, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MatrixUser;

    fn user(name: &str, generation: i64, display: &str) -> MatrixUser {
        let spec = serde_json::from_value(serde_json::json!({"username": name, "displayName": display})).expect("spec");
        let mut u = MatrixUser::new(name, spec);
        u.metadata.namespace = Some("ns".into());
        u.metadata.uid = Some(format!("uid-{name}"));
        u.metadata.generation = Some(generation);
        u
    }

    #[test]
    fn a_status_write_or_a_finalizer_is_no_news_but_a_spec_edit_and_a_deletion_are() {
        let mut changes = Changes::new(generation_fingerprint::<MatrixUser>);
        let mut ann = user("ann", 1, "Ann");
        assert!(changes.applied(&ann), "first seen");
        ann.status = Some(Default::default());
        assert!(!changes.applied(&ann), "status only");
        ann.metadata.finalizers = Some(vec!["exomatrix.dev/account".into()]);
        assert!(!changes.applied(&ann), "finalizer added: the pass that added it applied the object already");
        ann.metadata.finalizers = None;
        assert!(!changes.applied(&ann), "finalizer stripped by hand: back at the next resync");
        ann.metadata.annotations = Some([("x".to_owned(), "y".to_owned())].into());
        assert!(!changes.applied(&ann), "an annotation the controller does not read");
        ann.metadata.generation = Some(2);
        assert!(changes.applied(&ann), "spec edited");
        ann.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::from_second(1).expect("ts")));
        assert!(changes.applied(&ann), "being deleted");
        changes.deleted(&ann);
        assert!(changes.applied(&ann), "a deleted object is forgotten");
    }

    #[test]
    fn trimming_keeps_what_the_operator_reads() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut ann = user("ann", 3, "Ann");
        ann.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("kubectl".into()), ..Default::default() }]);
        ann.metadata.annotations =
            Some([(LAST_APPLIED.to_owned(), "{}".to_owned()), ("exomatrix.dev/x".to_owned(), "y".to_owned())].into());
        ann.metadata.finalizers = Some(vec!["exomatrix.dev/account".into()]);
        let before = generation_fingerprint(&ann);
        trim(&mut ann);
        assert_eq!(ann.metadata.managed_fields, None);
        assert_eq!(ann.annotations().keys().collect::<Vec<_>>(), vec!["exomatrix.dev/x"], "other annotations kept");
        assert_eq!(generation_fingerprint(&ann), before, "generation and finalizers untouched");
        assert_eq!((ann.uid(), ann.spec.display_name.as_deref()), (Some("uid-ann".into()), Some("Ann")));
    }

    #[test]
    fn a_relist_forgets_objects_gone_meanwhile() {
        let mut changes = Changes::new(generation_fingerprint::<MatrixUser>);
        let (ann, bob) = (user("ann", 1, "Ann"), user("bob", 1, "Bob"));
        assert!(changes.applied(&ann) && changes.applied(&bob));
        changes.keep_only(&[Arc::new(ann.clone())]);
        assert!(!changes.applied(&ann));
        assert!(changes.applied(&bob), "bob went away during the gap; seen again, he is news");
    }

    #[tokio::test]
    async fn every_subscriber_gets_each_event_and_the_filtered_one_only_changes() {
        let mut shared = SharedWatch::<MatrixUser>::default();
        let store = shared.store();
        let all = shared.subscribe();
        let own = shared.subscribe_changes(generation_fingerprint::<MatrixUser>);
        let (listed_tx, listed) = watch::channel(false);
        let ann = user("ann", 1, "Ann");
        let mut ann_status = ann.clone();
        ann_status.status = Some(Default::default());
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(ann.clone())),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(ann_status)),
            Ok(watcher::Event::Delete(ann.clone())),
        ]);
        shared.run(events, Some(listed_tx)).await;
        assert!(*listed.borrow());
        assert!(store.is_empty(), "the delete reached the cache");
        let all: Vec<Arc<MatrixUser>> = all.collect().await;
        let own: Vec<Arc<MatrixUser>> = own.collect().await;
        assert_eq!(all.len(), 3, "listed, status write, deletion");
        assert_eq!(own.len(), 1, "only the listing: the status write and the deletion are no news");
    }
}
