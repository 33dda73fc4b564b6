//! Schema migrations on a real PostgreSQL: hubs starting together migrate
//! once; a second run is a no-op; a schema newer than the build is
//! refused and left untouched.

use hub::db::migrate::{MigrateError, Outcome, SCHEMA_VERSION, migrate};

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_starting_together_migrate_once_and_a_rerun_is_a_no_op() {
    let url = tokio::task::spawn_blocking(|| invigil_e2e::pg::database("migrate_once")).await.unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { migrate(&mut connect(&url).await).await.unwrap() })
        })
        .collect();
    let mut from_zero = 0;
    for r in runs {
        let o = r.await.unwrap();
        assert_eq!(o.to, SCHEMA_VERSION);
        from_zero += usize::from(o.from == 0);
    }
    assert_eq!(from_zero, 1, "exactly one of them did the work");
    let c = connect(&url).await;
    let n: i64 = c.query_one("SELECT count(*) FROM schema_version", &[]).await.unwrap().get(0);
    assert_eq!(n, SCHEMA_VERSION as i64);
    let mut c = connect(&url).await;
    assert_eq!(migrate(&mut c).await.unwrap(), Outcome { from: SCHEMA_VERSION, to: SCHEMA_VERSION });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_untouched() {
    let url = tokio::task::spawn_blocking(|| invigil_e2e::pg::database("migrate_newer")).await.unwrap();
    let mut c = connect(&url).await;
    migrate(&mut c).await.unwrap();
    let newer = SCHEMA_VERSION + 1;
    c.execute("INSERT INTO schema_version (version, name) VALUES ($1, 'from the future')", &[&newer]).await.unwrap();
    c.execute("CREATE TABLE future_table (x int)", &[]).await.unwrap();
    let before: i64 =
        c.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[]).await.unwrap().get(0);
    match migrate(&mut c).await {
        Err(MigrateError::Newer { found, known }) => assert_eq!((found, known), (newer, SCHEMA_VERSION)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after: i64 =
        c.query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[]).await.unwrap().get(0);
    assert_eq!(before, after);
    let e = migrate(&mut c).await.unwrap_err().to_string();
    assert!(e.contains("newer than this invigil-hub knows") && e.contains("nothing was changed"), "{e}");
}
