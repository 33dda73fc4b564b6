//! Clip upload to a real S3 server (`moto_server` on loopback, started by
//! each test) and to the default folder store; the incident's metadata
//! with the object key reaches the score receiver in a later batch.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use agent::domain::ClipFile;
use agent::spool::{Record, Spool};
use agent::sync::{Step, SyncSettings, Syncer};
use agent::upload::{Credentials, StoreUrl, UploadSettings, UploadStep, Uploader};
use object_store::ObjectStoreExt;
use support::moto::{Moto, free_port};
use support::receiver::Receiver;
use support::{incident, score};

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn s3(endpoint: &str, bucket: &str) -> UploadSettings {
    let mut s = UploadSettings::new(StoreUrl::S3 { bucket: bucket.into(), prefix: "exams".into() });
    s.endpoint = Some(endpoint.to_string());
    s.region = Some("eu-west-1".into());
    s.credentials = Some(Credentials::parse("access_key_id=testing\nsecret_access_key=testing\n").unwrap());
    s.backoff_min = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(200);
    s.request_timeout = Duration::from_secs(20);
    s
}

/// A spool with incident `id` (session s1, student x1) and its clip file of
/// `len` pseudo-random bytes.
fn clip(dir: &std::path::Path, path: &std::path::Path, id: &str, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| ((i as u64 * 2654435761) >> 13) as u8).collect();
    let file = dir.join(format!("{id}.mp4"));
    std::fs::write(&file, &data).unwrap();
    let mut s = Spool::open(path).unwrap();
    s.commit(&[
        incident(id, None),
        Record::Clip(ClipFile { incident_id: id.into(), path: file.clone(), bytes: len as u64 }),
    ])
    .unwrap();
    data
}

async fn get(up: &Uploader, key: &str) -> Vec<u8> {
    up.store().expect("an object store").get(&key.into()).await.unwrap().bytes().await.unwrap().to_vec()
}

#[test]
fn a_clip_reaches_s3_under_its_key_with_the_same_bytes_and_its_incident_names_it() {
    let moto = Moto::start();
    moto.create_bucket("clips");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    Spool::open(&path).unwrap().commit(&(0..10).map(score).collect::<Vec<_>>()).unwrap();
    let data = clip(dir.path(), &path, "inc-1", 300_000);
    let rx = Receiver::start();
    let mut sync = SyncSettings::new(&rx.url, "desk-u");
    sync.backoff_min = Duration::from_millis(10);
    block_on(async {
        // The incident goes first without its clip…
        let mut syncer = Syncer::new(sync, &path, None).unwrap();
        assert_eq!(syncer.step().await, Step::Delivered { more: false });
        let mut up = Uploader::new(s3(&moto.endpoint, "clips"), &path).unwrap();
        let step = up.step().await;
        assert_eq!(
            step,
            UploadStep::Uploaded { key: "exams/s1/x1/inc-1.mp4".into(), bytes: 300_000, multipart: false }
        );
        assert_eq!(get(&up, "exams/s1/x1/inc-1.mp4").await, data, "same bytes in S3");
        assert_eq!(up.step().await, UploadStep::Idle);
        // …then again with it.
        assert_eq!(syncer.step().await, Step::Delivered { more: false });
    });
    let stored = rx.stored();
    assert!(stored[0]["incidents"][0]["clip"].is_null());
    let clip = &stored[1]["incidents"][0]["clip"];
    assert_eq!(stored[1]["incidents"][0]["id"], "inc-1");
    assert_eq!(clip["key"], "exams/s1/x1/inc-1.mp4");
    assert_eq!(clip["url"], "s3://clips/exams/s1/x1/inc-1.mp4");
    assert_eq!(clip["bytes"], 300_000);
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.clips_pending, st.clips_uploaded, st.incidents_pending), (0, 1, 0));
}

#[test]
fn a_large_clip_goes_up_in_parts() {
    let moto = Moto::start();
    moto.create_bucket("clips");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let data = clip(dir.path(), &path, "inc-big", (11 << 20) + 12345);
    let mut s = s3(&moto.endpoint, "clips");
    s.part_size = 5 << 20;
    block_on(async {
        let mut up = Uploader::new(s, &path).unwrap();
        let step = up.step().await;
        assert_eq!(
            step,
            UploadStep::Uploaded { key: "exams/s1/x1/inc-big.mp4".into(), bytes: data.len() as u64, multipart: true }
        );
        assert_eq!(get(&up, "exams/s1/x1/inc-big.mp4").await, data);
        assert_eq!(up.stats.multipart.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn a_pending_clip_waits_for_s3_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let data = clip(dir.path(), &path, "inc-2", 50_000);
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    block_on(async {
        // Nothing listens yet.
        let mut up = Uploader::new(s3(&endpoint, "clips"), &path).unwrap();
        for _ in 0..2 {
            assert!(matches!(up.step().await, UploadStep::Retry { .. }));
        }
    });
    assert_eq!(Spool::open(&path).unwrap().stats(50).unwrap().clips_pending, 1, "still pending");
    let moto = Moto::start_on(port);
    moto.create_bucket("clips");
    block_on(async {
        // A new process: the clip is still there to upload.
        let mut up = Uploader::new(s3(&endpoint, "clips"), &path).unwrap();
        assert!(matches!(up.step().await, UploadStep::Uploaded { .. }));
        assert_eq!(get(&up, "exams/s1/x1/inc-2.mp4").await, data);
    });
}

#[test]
fn clips_upload_oldest_first_to_the_default_folder_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let a = clip(dir.path(), &path, "inc-a", 1000);
    let b = clip(dir.path(), &path, "inc-b", 2000);
    let outbox = dir.path().join("outbox");
    let mut s = UploadSettings::new(StoreUrl::File { dir: outbox.clone() });
    s.backoff_min = Duration::from_millis(10);
    let steps = block_on(async {
        let mut up = Uploader::new(s, &path).unwrap();
        vec![up.step().await, up.step().await, up.step().await]
    });
    let keys: Vec<String> = steps
        .iter()
        .filter_map(|s| if let UploadStep::Uploaded { key, .. } = s { Some(key.clone()) } else { None })
        .collect();
    assert_eq!(keys, vec!["s1/x1/inc-a.mp4".to_string(), "s1/x1/inc-b.mp4".into()]);
    assert_eq!(steps[2], UploadStep::Idle);
    assert_eq!(std::fs::read(outbox.join("s1/x1/inc-a.mp4")).unwrap(), a);
    assert_eq!(std::fs::read(outbox.join("s1/x1/inc-b.mp4")).unwrap(), b);
}

#[test]
fn a_clip_without_a_session_goes_under_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    let file = dir.path().join("orphan.mp4");
    std::fs::write(&file, b"x").unwrap();
    Spool::open(&path)
        .unwrap()
        .commit(&[Record::Clip(ClipFile { incident_id: "orphan".into(), path: file.clone(), bytes: 1 })])
        .unwrap();
    let step = block_on(async {
        Uploader::new(UploadSettings::new(StoreUrl::File { dir: dir.path().join("out") }), &path).unwrap().step().await
    });
    assert_eq!(step, UploadStep::Uploaded { key: "none/none/orphan.mp4".into(), bytes: 1, multipart: false });
}

#[test]
fn the_clip_quota_deletes_the_oldest_uploaded_clips_and_never_a_pending_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    clip(dir.path(), &path, "inc-1", 100_000);
    clip(dir.path(), &path, "inc-2", 100_000);
    let mut s = UploadSettings::new(StoreUrl::File { dir: dir.path().join("out") });
    s.clips_max_bytes = 250_000;
    block_on(async {
        let mut up = Uploader::new(s, &path).unwrap();
        assert!(matches!(up.step().await, UploadStep::Uploaded { .. }));
        assert!(matches!(up.step().await, UploadStep::Uploaded { .. }));
        // Two pending clips arrive: 400 kB on disk, 250 kB allowed.
        clip(dir.path(), &path, "inc-3", 100_000);
        clip(dir.path(), &path, "inc-4", 100_000);
        assert_eq!(up.enforce_quota(), 200_000);
        assert!(!dir.path().join("inc-1.mp4").exists() && !dir.path().join("inc-2.mp4").exists());
        assert!(dir.path().join("inc-3.mp4").exists() && dir.path().join("inc-4.mp4").exists());
        assert!(!up.stats.over_quota.load(Ordering::Relaxed));
        // A third pending one: over quota, but pending clips stay.
        clip(dir.path(), &path, "inc-5", 100_000);
        assert_eq!(up.enforce_quota(), 0);
        assert!(up.stats.over_quota.load(Ordering::Relaxed));
        assert!(dir.path().join("inc-5.mp4").exists());
        assert_eq!(up.stats.evicted.load(Ordering::Relaxed), 2);
    });
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.clips, st.clips_uploaded, st.clips_pending), (5, 2, 3), "the records stay");
}

#[test]
fn a_clip_whose_file_is_gone_is_marked_lost_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    clip(dir.path(), &path, "inc-gone", 10);
    clip(dir.path(), &path, "inc-here", 10);
    std::fs::remove_file(dir.path().join("inc-gone.mp4")).unwrap();
    let steps = block_on(async {
        let mut up = Uploader::new(UploadSettings::new(StoreUrl::File { dir: dir.path().join("out") }), &path).unwrap();
        vec![up.step().await, up.step().await, up.step().await]
    });
    assert_eq!(steps[0], UploadStep::Lost);
    assert!(matches!(steps[1], UploadStep::Uploaded { .. }));
    assert_eq!(steps[2], UploadStep::Idle);
}

#[test]
fn uploaded_clips_leave_the_box_after_keep_uploaded_and_pending_ones_never_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite");
    clip(dir.path(), &path, "inc-1", 1_000);
    clip(dir.path(), &path, "inc-2", 1_000);
    let mut s = UploadSettings::new(StoreUrl::File { dir: dir.path().join("out") });
    s.keep_uploaded = Duration::from_secs(24 * 3600);
    let key = block_on(async {
        let mut up = Uploader::new(s, &path).unwrap();
        let UploadStep::Uploaded { key, .. } = up.step().await else { panic!("inc-1 not uploaded") };
        // inc-2 stays pending (not uploaded yet).
        let now = chrono::Utc::now();
        assert_eq!(up.expire_uploaded(now + chrono::Duration::hours(23)), 0, "kept for a day");
        assert!(dir.path().join("inc-1.mp4").exists());
        assert_eq!(up.expire_uploaded(now + chrono::Duration::hours(25)), 1_000);
        assert!(!dir.path().join("inc-1.mp4").exists(), "gone from the box a day after its upload");
        assert!(dir.path().join("inc-2.mp4").exists(), "a clip not uploaded is never deleted for age");
        assert_eq!(up.expire_uploaded(now + chrono::Duration::days(400)), 0);
        assert_eq!(up.stats.expired.load(Ordering::Relaxed), 1);
        key
    });
    // The uploaded object is still in the store, and the record stays.
    assert!(dir.path().join("out").join(&key).exists(), "{key}");
    let st = Spool::open(&path).unwrap().stats(50).unwrap();
    assert_eq!((st.clips, st.clips_uploaded, st.clips_pending), (2, 1, 1));
}

#[test]
fn the_default_local_outbox_is_kept_under_the_clip_quota_an_explicit_one_is_not() {
    for bound in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        let mut s = UploadSettings::new(StoreUrl::File { dir: dir.path().join("outbox") });
        s.clips_max_bytes = 250_000;
        s.bound_outbox = bound;
        let (freed, left) = block_on(async {
            let mut up = Uploader::new(s, &path).unwrap();
            for id in ["inc-1", "inc-2", "inc-3"] {
                clip(dir.path(), &path, id, 100_000);
                assert!(matches!(up.step().await, UploadStep::Uploaded { .. }));
                // Distinct modification times, oldest first.
                std::thread::sleep(Duration::from_millis(20));
            }
            let freed = up.trim_outbox().await;
            let mut left = Vec::new();
            let mut dirs = vec![dir.path().join("outbox")];
            while let Some(d) = dirs.pop() {
                for e in std::fs::read_dir(d).unwrap().flatten() {
                    if e.path().is_dir() {
                        dirs.push(e.path());
                    } else {
                        left.push(e.file_name().to_string_lossy().to_string());
                    }
                }
            }
            left.sort();
            (freed, left)
        });
        if bound {
            assert_eq!(freed, 100_000);
            assert_eq!(left, ["inc-2.mp4", "inc-3.mp4"], "the oldest went");
        } else {
            assert_eq!((freed, left.len()), (0, 3), "an explicit file:// store is the admin's");
        }
    }
}
