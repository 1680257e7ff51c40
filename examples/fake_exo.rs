//! The tests' fake eXo server with a little sample data, for the demo
//! (`DEMO_EXO=1 tests/demo.sh`). Prints its URL, then serves until stopped.

#[allow(dead_code)]
#[path = "../tests/support/exo.rs"]
mod exo;

#[tokio::main]
async fn main() {
    let fake = exo::FakeExo::start().await;
    fake.edit(|s| {
        s.spaces.insert("21".into(), ("marketing".into(), "Marketing".into(), "Campaigns and <b>brand</b>".into()));
        s.spaces.insert("22".into(), ("engineering".into(), "Engineering".into(), "Build and run".into()));
        s.members.insert("21".into(), vec!["mary".into(), "john".into(), "lena".into()]);
        s.managers.insert("21".into(), vec!["mary".into()]);
        s.members.insert("22".into(), vec!["john".into(), "lena".into()]);
        s.managers.insert("22".into(), vec!["lena".into()]);
        for (u, full) in [("mary", "Mary Kelly"), ("john", "John Smith"), ("lena", "Lena Berg")] {
            s.users.insert(u.into(), (full.into(), format!("{u}@example.org"), true));
        }
    });
    println!("{}", fake.url);
    let _ = tokio::signal::ctrl_c().await;
}
