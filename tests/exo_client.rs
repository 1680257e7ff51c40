//! The eXo client against the contract fake, one test per API shape (Meeds 7,
//! eXo 6.x, eXo 5.3) and per way paging can go wrong. No platform needed.

mod support;

use std::collections::BTreeSet;

use exo_matrix_operator::exo::{Dialect, ExoClient, ExoError, Snapshot};
use exo_matrix_operator::plan::source::unconfirmed_roster;
use exo_matrix_operator::secret::SecretString;
use support::exo::{FakeExo, Garbage, Misbehaviour, PASSWORD, USERNAME, Version};

async fn fake(version: Version) -> FakeExo {
    let exo = FakeExo::start().await;
    exo.edit(|s| {
        s.version = version;
        for (id, pretty) in [("12", "marketing"), ("15", "support"), ("16", "sales"), ("17", "empty")] {
            s.spaces.insert(id.into(), (pretty.into(), format!("{pretty} team"), "about".into()));
        }
        s.members.insert("12".into(), ["ann", "bob", "dan", "eve", "off"].map(String::from).to_vec());
        s.managers.insert("12".into(), vec!["ann".into()]);
        s.members.insert("15".into(), vec!["cat".into()]);
        s.managers.insert("15".into(), vec!["cat".into()]);
        s.members.insert("16".into(), vec!["ann".into(), "bob".into(), "cat".into()]);
        for u in ["ann", "bob", "cat", "dan", "eve"] {
            s.add_user(u);
        }
        s.users.insert("off".into(), ("Off Full".into(), "off@example.org".into(), false));
    });
    exo
}

fn client(exo: &FakeExo) -> ExoClient {
    ExoClient::new(&exo.url, USERNAME, SecretString::new(PASSWORD)).expect("client")
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What every shape must give: the same rosters and users, whatever the version.
fn assert_complete(snap: &Snapshot) {
    assert_eq!(snap.spaces.len(), 4);
    assert_eq!(snap.members["12"], names(&["ann", "bob", "dan", "eve"]), "disabled users are not in rosters");
    assert_eq!(snap.managers["12"], names(&["ann"]));
    assert_eq!(snap.members["15"], names(&["cat"]));
    assert_eq!(snap.members["16"], names(&["ann", "bob", "cat"]));
    assert!(snap.members["17"].is_empty());
    assert_eq!(snap.users.keys().cloned().collect::<BTreeSet<_>>(), names(&["ann", "bob", "cat", "dan", "eve", "off"]));
    assert!(!snap.users["off"].enabled);
    assert_eq!(snap.users["ann"].fullname.as_deref(), Some("ann Full"));
    for space in &snap.spaces {
        assert!(unconfirmed_roster(space, &snap.members[&space.id], &snap.managers[&space.id]).is_none());
    }
}

#[tokio::test]
async fn meeds7_rosters_come_from_space_memberships() {
    let exo = fake(Version::Meeds7).await;
    let snap = client(&exo).snapshot().await.expect("snapshot");
    assert_eq!(snap.dialect, Dialect::Meeds7);
    assert_complete(&snap);
    assert_eq!(snap.spaces.iter().find(|s| s.id == "12").and_then(|s| s.members_count), Some(4));
}

#[tokio::test]
async fn exo6_rosters_come_from_space_users_not_the_callers_memberships() {
    let exo = fake(Version::Exo6).await;
    let snap = client(&exo).snapshot().await.expect("snapshot");
    assert_eq!(snap.dialect, Dialect::Exo6);
    assert_complete(&snap);
}

#[tokio::test]
async fn exo5_has_no_pretty_names_counts_or_user_filters_and_pages_by_page_length() {
    let exo = fake(Version::Exo5).await;
    // Pages of 2: every collection here spans several, and X5's `size` is only the page length.
    let snap = client(&exo).with_paging(2, 100).snapshot().await.expect("snapshot");
    assert_eq!(snap.dialect, Dialect::Exo5);
    assert_complete(&snap);
    let marketing = snap.spaces.iter().find(|s| s.id == "12").expect("space");
    assert_eq!((marketing.pretty_name.as_deref(), marketing.group_suffix()), (None, Some("marketing")));
}

#[tokio::test]
async fn an_empty_roster_is_reported_unconfirmed_while_the_space_counts_members() {
    let exo = fake(Version::Meeds7).await;
    exo.edit(|s| s.misbehave = Some(Misbehaviour::EmptyRosters));
    let snap = client(&exo).snapshot().await.expect("an empty roster is not an error of the transport");
    let marketing = snap.spaces.iter().find(|s| s.id == "12").expect("space");
    let why = unconfirmed_roster(marketing, &snap.members["12"], &snap.managers["12"]).expect("held");
    assert!(why.contains("4 members"), "{why}");
    let empty = snap.spaces.iter().find(|s| s.id == "17").expect("space");
    assert!(unconfirmed_roster(empty, &snap.members["17"], &snap.managers["17"]).is_none(), "0 members is the truth");
}

#[tokio::test]
async fn paging_ends_when_exo_never_says_the_list_is_done() {
    let exo = fake(Version::Meeds7).await;
    exo.edit(|s| s.misbehave = Some(Misbehaviour::EndlessFullPages));
    let before = exo.state.lock().expect("lock").requests;
    let err = client(&exo).with_paging(2, 25).spaces().await.expect_err("an endless listing is an error");
    assert!(matches!(err, ExoError::TooManyPages { pages: 25, .. }), "{err:?}");
    assert!(err.to_string().contains("full pages"), "{err}");
    assert_eq!(exo.state.lock().expect("lock").requests - before, 25);
}

#[tokio::test]
async fn a_total_announced_but_not_given_is_an_error() {
    let exo = fake(Version::Meeds7).await;
    exo.edit(|s| s.misbehave = Some(Misbehaviour::ServerErrorOnPage2));
    let err = client(&exo).spaces().await.expect_err("a failed page fails the listing");
    assert!(matches!(err, ExoError::Status { status: 500, .. }), "{err:?}");
}

#[tokio::test]
async fn pages_shorter_than_asked_are_followed_to_the_announced_total() {
    for version in [Version::Meeds7, Version::Exo6] {
        let exo = fake(version).await;
        exo.edit(|s| s.page_cap = 4);
        let whole = exo.state.lock().expect("lock").requests;
        client(&exo).snapshot().await.expect("snapshot");
        let whole = exo.state.lock().expect("lock").requests - whole;
        exo.edit(|s| s.misbehave = Some(Misbehaviour::HalfPages));
        let before = exo.state.lock().expect("lock").requests;
        let snap = client(&exo).snapshot().await.expect("half pages are still pages");
        assert_complete(&snap);
        assert!(exo.state.lock().expect("lock").requests - before > whole, "{version:?}: the pages were shorter");
    }
}

#[tokio::test]
async fn garbage_500s_and_truncated_bodies_fail_the_snapshot() {
    let mut faults: Vec<Misbehaviour> = Garbage::ALL.into_iter().map(Misbehaviour::Garbage).collect();
    faults.extend([Misbehaviour::ServerError, Misbehaviour::TruncatedBodies]);
    for version in [Version::Meeds7, Version::Exo6] {
        for fault in &faults {
            let exo = fake(version).await;
            exo.edit(|s| s.misbehave = Some(*fault));
            let got = client(&exo).snapshot().await;
            assert!(got.is_err(), "{version:?} {fault:?}: a wrong answer must not read as a snapshot: {got:?}");
        }
    }
}

/// A space id is sent as data: one holding `&`, `=`, `/` or a space reaches eXo whole,
/// in the query (Meeds 7) and in the path (eXo 6), and never adds a parameter.
#[tokio::test]
async fn a_space_id_with_reserved_characters_is_sent_encoded() {
    let odd = "7 a&status=manager/x";
    for version in [Version::Meeds7, Version::Exo6] {
        let exo = FakeExo::start().await;
        exo.edit(|s| {
            s.version = version;
            s.spaces.insert(odd.into(), ("odd".into(), "Odd".into(), "about".into()));
            s.members.insert(odd.into(), vec!["ann".into(), "bob".into()]);
            s.managers.insert(odd.into(), vec!["ann".into()]);
            s.add_user("ann");
            s.add_user("bob");
        });
        let snap = client(&exo).snapshot().await.unwrap_or_else(|e| panic!("{version:?}: {e}"));
        assert_eq!(snap.members[odd], names(&["ann", "bob"]), "{version:?}");
        assert_eq!(snap.managers[odd], names(&["ann"]), "{version:?}");
    }
}
