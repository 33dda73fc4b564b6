//! TLS to PostgreSQL (managed services require it): with `sslmode=require`
//! the hub verifies the server's certificate against the system's roots
//! plus `database.ca_file`; an unknown issuer is refused, and a server
//! without TLS is not silently used in plain text.

use hub::db::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_reaches_postgresql_over_verified_tls_only() {
    let (url, ca) = tokio::task::spawn_blocking(invigil_e2e::pg::start_tls_cluster).await.unwrap();
    let db = format!("{url}/postgres?sslmode=require");
    let e = Db::connect(&db, 1).await.err().expect("a self-signed server without its CA is refused");
    assert!(format!("{e:#}").to_lowercase().contains("certificate"), "{e:#}");
    let d = Db::connect_tls(&db, 1, Some(&ca)).await.unwrap();
    let c = d.get().await.unwrap();
    let ssl: bool = c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl, "the pooled connection uses TLS");
    let mut m = d.dedicated().await.unwrap();
    hub::db::migrate::migrate(&mut m).await.unwrap();
    let plain = tokio::task::spawn_blocking(invigil_e2e::pg::server_url).await.unwrap();
    assert!(Db::connect(&format!("{plain}/postgres?sslmode=require"), 1).await.is_err(), "no plain-text fallback");
    // Without sslmode the hub does not try TLS (a local server's
    // self-signed certificate cannot fail it).
    assert!(Db::connect(&format!("{url}/postgres"), 1).await.is_ok());
}
