//! The config's defaults and errors, as users meet them.

use super::*;

#[test]
fn the_config_the_sd_image_ships_is_valid() {
    let file =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../yocto/meta-invigil/recipes-invigil/invigil-config/files/config.toml");
    let text = std::fs::read_to_string(file).unwrap();
    let v = Config::parse(&text, file).unwrap().validate(file).unwrap();
    assert_eq!((v.clips_max_per_session, v.clips_keep_uploaded_h, v.spool_keep_delivered_h), (30, 24, 24));
}

#[test]
fn empty_config_gives_the_documented_defaults() {
    let v = Config::parse("", "x.toml").unwrap().validate("x.toml").unwrap();
    assert_eq!((v.width, v.height, v.fps), (640, 480, 30));
    assert_eq!(v.source, pipeline::Source::Test);
    assert_eq!(v.score.threshold, 50);
    assert_eq!(v.score.persistence_ms, 1500);
    assert_eq!(v.signals, models::SignalConfig::default());
    assert!(v.signals.talking && v.signals.gaze && v.signals.hand_at_face && v.signals.second_person);
    assert_eq!(
        (v.signals.landmarks_hz, v.signals.iris_hz, v.signals.palm_hz, v.signals.full_range_hz),
        (15.0, 5.0, 2.0, 1.0)
    );
    assert_eq!(v.clip_length_s, 10);
    assert_eq!(v.preroll_s, 3);
    assert_eq!(v.clips_max_per_session, 30);
    assert_eq!((v.clips_keep_uploaded_h, v.spool_keep_delivered_h), (24, 24));
    assert_eq!(v.commit_interval_ms, 1000);
    assert_eq!(v.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(v.spool_path, PathBuf::from("invigil-data/spool.sqlite"));
}

#[test]
fn low_profile_is_480x360_at_15() {
    let v = Config::parse("[camera]\nprofile = \"low\"\n", "x").unwrap().validate("x").unwrap();
    assert_eq!((v.width, v.height, v.fps), (480, 360, 15));
}

#[test]
fn unknown_keys_are_named() {
    let e = Config::parse("[camera]\nsorce = \"test\"\n", "desk.toml").unwrap_err().to_string();
    assert!(e.starts_with("desk.toml: ") && e.contains("sorce"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    let e = Config::parse("colour = 1\n", "desk.toml").unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn bad_values_name_the_field_and_a_good_value() {
    let cases = [
        ("[camera]\nsource = \"usb\"\n", "camera.source"),
        ("[camera]\nprofile = \"fast\"\n", "camera.profile"),
        ("[camera]\nfps = 0\n", "camera.fps"),
        ("[camera]\nmains_hz = 55\n", "camera.mains_hz"),
        ("[score]\nthreshold = 0\n", "score.threshold"),
        ("[score]\nlandmarks_hz = 0\n", "score.landmarks_hz"),
        ("[score]\npalm_hz = 100\n", "score.palm_hz"),
        ("[clips]\npreroll_s = 12\n", "clips.preroll_s"),
        ("[clips]\nmax_per_session = 20000\n", "clips.max_per_session"),
        ("[clips]\nkeep_uploaded_h = 9000\n", "clips.keep_uploaded_h"),
        ("[spool]\nkeep_delivered_h = 0\n", "spool.keep_delivered_h"),
        ("[server]\nlisten = \"0.0.0.0:8000\"\n", "server.token_file"),
        ("[server]\nlisten = \"here\"\n", "server.listen"),
        ("device_id = \"desk 17\"\n", "device_id"),
        ("[model]\nbackend = \"onnx\"\n", "model.backend"),
        ("[hub]\nurl = \"ftp://hub\"\ntoken_file = \"/t\"\n", "hub.url"),
    ];
    for (text, field) in cases {
        let e = Config::parse(text, "c.toml").unwrap().validate("c.toml").unwrap_err().to_string();
        assert!(e.starts_with(&format!("c.toml: {field}: ")), "{text:?} -> {e}");
    }
}

#[test]
fn wrong_types_are_named() {
    let e = Config::parse("[camera]\nfps = \"thirty\"\n", "c.toml").unwrap_err().to_string();
    assert!(e.contains("fps") || e.contains("invalid type"), "{e}");
}

#[test]
fn a_hub_gives_the_ingest_websocket_and_clip_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("hub.token");
    std::fs::write(&token, "t0k\n").unwrap();
    let text = format!("[hub]\nurl = \"https://hub.example/invigil/\"\ntoken_file = \"{}\"\n", token.display());
    let v = Config::parse(&text, "c.toml").unwrap().validate("c.toml").unwrap();
    let hub = v.hub.unwrap();
    assert_eq!(hub.ingest_url(), "https://hub.example/invigil/api/exam/analyze-batch");
    assert_eq!(hub.ws_url(), "wss://hub.example/invigil/api/device/ws");
    assert_eq!(hub.clip_url("i1", 2), "https://hub.example/invigil/api/device/incidents/i1/clips/2");
    assert_eq!(hub.token_file, token);
    let plain = Config::parse("[hub]\nurl = \"http://10.0.0.5:8080\"\ntoken_file = \"/t\"\n", "c").unwrap();
    assert_eq!(plain.validate("c").unwrap().hub.unwrap().ws_url(), "ws://10.0.0.5:8080/api/device/ws");
}

#[test]
fn the_model_backend_is_auto_unless_chosen() {
    let v = Config::parse("", "c.toml").unwrap().validate("c.toml").unwrap();
    assert_eq!((v.model_backend, v.litert_lib), (models::Backend::Auto, None));
    let text = "[model]\nbackend = \"litert\"\nlitert_lib = \"/opt/lib/libLiteRt.so\"\n";
    let v = Config::parse(text, "c.toml").unwrap().validate("c.toml").unwrap();
    assert_eq!(v.model_backend, models::Backend::LiteRt);
    assert_eq!(v.litert_lib.as_deref(), Some(Path::new("/opt/lib/libLiteRt.so")));
    let v = Config::parse("[model]\nbackend = \"tflite\"\n", "c.toml").unwrap().validate("c.toml").unwrap();
    assert_eq!(v.model_backend, models::Backend::Tflite);
}

#[test]
fn each_signal_can_be_turned_off_and_its_rate_set() {
    let text =
        "[score]\ntalking = false\ngaze = false\nhand_at_face = false\nsecond_person = false\nlandmarks_hz = 10\n";
    let v = Config::parse(text, "x").unwrap().validate("x").unwrap();
    assert_eq!(v.signals, models::SignalConfig { landmarks_hz: 10.0, ..models::SignalConfig::off() });
    let e = Config::parse("[score]\ntalkng = false\n", "x").unwrap_err().to_string();
    assert!(e.contains("talkng"), "{e}");
}
