//! The camera and encoder hardware this machine cannot have, faked as
//! GStreamer elements under their real names so that everything around them
//! is the real pipeline:
//! - `libcamerasrc` (a Raspberry Pi CSI camera): a bin around a live test
//!   source; the capture pipeline built for `Source::Libcamera` must run.
//! - `v4l2h264enc` that exists but fails once frames arrive, as a hardware
//!   encoder does on a board without the encoder block (Jetson Orin Nano's
//!   `nvv4l2h264enc`, a Pi 5's missing codec): `auto` must skip it.

use std::sync::Once;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use pipeline::encoder::{EncoderSettings, working_encoders};
use pipeline::{Capture, CaptureConfig, PipelineError, Source};

/// What the broken encoder says, so the tests can find it in errors.
const BROKEN: &str = "fake hardware encoder: no encoder block on this board";

mod csi_camera {
    use super::*;

    #[derive(Default)]
    pub struct Imp;

    #[glib::object_subclass]
    impl ObjectSubclass for Imp {
        const NAME: &'static str = "InvigilFakeLibcamerasrc";
        type Type = super::FakeCsiCamera;
        type ParentType = gst::Bin;
    }

    impl ObjectImpl for Imp {
        fn constructed(&self) {
            self.parent_constructed();
            // A live source at the sensor's own size, as libcamerasrc is.
            let src = gst::ElementFactory::make("videotestsrc")
                .property("is-live", true)
                .property_from_str("pattern", "ball")
                .build()
                .unwrap();
            let obj = self.obj();
            obj.add(&src).unwrap();
            let pad = gst::GhostPad::builder_with_target(&src.static_pad("src").unwrap()).unwrap().name("src").build();
            obj.add_pad(&pad).unwrap();
        }
    }

    impl GstObjectImpl for Imp {}

    impl ElementImpl for Imp {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: std::sync::LazyLock<gst::subclass::ElementMetadata> = std::sync::LazyLock::new(|| {
                gst::subclass::ElementMetadata::new("Fake libcamera source", "Source/Video", "test stand-in", "invigil")
            });
            Some(&META)
        }
    }

    impl BinImpl for Imp {}
}

glib::wrapper! {
    pub struct FakeCsiCamera(ObjectSubclass<csi_camera::Imp>) @extends gst::Bin, gst::Element, gst::Object;
}

mod broken_encoder {
    use super::*;

    pub struct Imp {
        sinkpad: gst::Pad,
        srcpad: gst::Pad,
        extra_controls: std::sync::Mutex<Option<gst::Structure>>,
    }

    fn templates() -> &'static [gst::PadTemplate] {
        static T: std::sync::LazyLock<Vec<gst::PadTemplate>> = std::sync::LazyLock::new(|| {
            let raw = gst::Caps::builder("video/x-raw").build();
            let h264 = gst::Caps::builder("video/x-h264").build();
            vec![
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &raw).unwrap(),
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &h264).unwrap(),
            ]
        });
        &T
    }

    #[glib::object_subclass]
    impl ObjectSubclass for Imp {
        const NAME: &'static str = "InvigilFakeBrokenH264Enc";
        type Type = super::BrokenEncoder;
        type ParentType = gst::Element;

        fn with_class(klass: &Self::Class) -> Self {
            let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
                // The element accepts any raw caps, as the real one does ...
                .event_function(|pad, parent, event| match event.view() {
                    gst::EventView::Caps(_) => true,
                    _ => gst::Pad::event_default(pad, parent, event),
                })
                // ... and fails on the first frame, like a missing encoder block.
                .chain_function(|_pad, parent, _buffer| {
                    let imp = parent.and_then(|p| p.downcast_ref::<super::BrokenEncoder>()).map(|e| e.imp());
                    if let Some(imp) = imp {
                        gst::element_imp_error!(imp, gst::ResourceError::Failed, ["{}", BROKEN]);
                    }
                    Err(gst::FlowError::Error)
                })
                .build();
            let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap()).build();
            Self { sinkpad, srcpad, extra_controls: Default::default() }
        }
    }

    impl ObjectImpl for Imp {
        fn properties() -> &'static [glib::ParamSpec] {
            // The real element's property that Invigil sets.
            static P: std::sync::LazyLock<Vec<glib::ParamSpec>> = std::sync::LazyLock::new(|| {
                vec![glib::ParamSpecBoxed::builder::<gst::Structure>("extra-controls").build()]
            });
            &P
        }

        fn set_property(&self, _id: usize, value: &glib::Value, _pspec: &glib::ParamSpec) {
            *self.extra_controls.lock().unwrap() = value.get().unwrap();
        }

        fn property(&self, _id: usize, _pspec: &glib::ParamSpec) -> glib::Value {
            self.extra_controls.lock().unwrap().to_value()
        }

        fn constructed(&self) {
            self.parent_constructed();
            self.obj().add_pad(&self.sinkpad).unwrap();
            self.obj().add_pad(&self.srcpad).unwrap();
        }
    }

    impl GstObjectImpl for Imp {}

    impl ElementImpl for Imp {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: std::sync::LazyLock<gst::subclass::ElementMetadata> = std::sync::LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "Fake broken H.264 encoder",
                    "Codec/Encoder/Video",
                    "test",
                    "invigil",
                )
            });
            Some(&META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            templates()
        }
    }
}

glib::wrapper! {
    pub struct BrokenEncoder(ObjectSubclass<broken_encoder::Imp>) @extends gst::Element, gst::Object;
}

/// Registers the fakes under the real elements' names, once per process.
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        for (name, ty) in
            [("libcamerasrc", FakeCsiCamera::static_type()), ("v4l2h264enc", BrokenEncoder::static_type())]
        {
            assert!(
                gst::ElementFactory::find(name).is_none(),
                "a real {name} exists here: these tests would not test the fake"
            );
            gst::Element::register(None, name, gst::Rank::NONE, ty).unwrap();
        }
    });
}

#[test]
fn auto_skips_a_hardware_encoder_that_exists_but_fails_on_frames() {
    register();
    let chosen = EncoderSettings::new("auto", 30, 1000).resolve(640, 480, 30).unwrap();
    assert_eq!(chosen.element, "x264enc", "the software encoder after the broken hardware one");
    // `invigil devices` shows why the hardware one was not taken.
    let all = working_encoders(640, 480, 30);
    let v4l2 = all.iter().find(|(e, _)| e == "v4l2h264enc").unwrap();
    let err = v4l2.1.as_ref().expect_err("the broken encoder fails its probe");
    assert!(err.contains(BROKEN), "{err}");
    assert!(all.iter().any(|(e, r)| e == "x264enc" && r.is_ok()), "{all:?}");
}

#[test]
fn naming_a_broken_encoder_is_an_error_that_says_why() {
    register();
    let err = EncoderSettings::new("v4l2h264enc", 30, 1000).resolve(640, 480, 30).unwrap_err();
    assert!(matches!(err, PipelineError::NoEncoder { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("v4l2h264enc") && msg.contains(BROKEN), "{msg}");
}

#[test]
fn a_pi_csi_camera_runs_through_the_real_capture_and_encode_pipeline() {
    register();
    let mut cfg = CaptureConfig::new(Source::Libcamera);
    cfg.encoder = Some(EncoderSettings::new("auto", cfg.fps, 1000));
    let encoded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = encoded.clone();
    let on_encoded: pipeline::capture::EncodedCallback = Box::new(move |unit, _caps| {
        e.lock().unwrap().push(unit.keyframe);
    });
    let cap = Capture::start(cfg, Some(on_encoded)).unwrap();
    assert_eq!(cap.encoder(), Some("x264enc"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut frames = Vec::new();
    while frames.len() < 45 && Instant::now() < deadline {
        if let Some(f) = cap.pull(Duration::from_millis(500)).unwrap() {
            frames.push((f.pts_ns, f.width, f.height));
        }
    }
    let stats = cap.stats();
    cap.stop();
    assert_eq!(frames.len(), 45, "analysis frames within 30 s: {stats:?}");
    assert!(frames.iter().all(|f| (f.1, f.2) == (320, 240)), "analysis frames are 320x240");
    assert!(frames.windows(2).all(|w| w[1].0 > w[0].0), "time increases");
    let encoded = encoded.lock().unwrap();
    assert!(encoded.len() >= 30, "{} encoded frames", encoded.len());
    assert!(encoded[0], "the encoded stream starts with a keyframe");
}
