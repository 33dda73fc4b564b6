//! The recording light and the call button (Raspberry Pi GPIO).
//!
//! Hardware sits behind the small [`Pins`] trait: [`RppalPins`] on a Pi
//! (cargo feature `gpio`, on by default), a fake in tests. [`Panel`] is the
//! logic, a pure function of pin readings and time:
//! - the light is on exactly while a clip is being recorded;
//! - a press of the call button (held for [`DEBOUNCE_MS`]) yields one
//!   [`Press`]; bounces and a held button yield nothing more until it is
//!   released for [`DEBOUNCE_MS`].

/// A level must be stable this long to count.
pub const DEBOUNCE_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("GPIO: {0} (gpio.recording_led / gpio.call_button are for a Raspberry Pi; remove [gpio] elsewhere)")]
    Unavailable(String),
    #[error("GPIO pin {pin}: {message}")]
    Pin { pin: u8, message: String },
}

/// The two pins the agent uses.
pub trait Pins: Send {
    fn set_light(&mut self, on: bool);
    /// True while the button is held down.
    fn button_down(&mut self) -> bool;
}

/// One debounced press of the call button.
#[derive(Debug, PartialEq, Eq)]
pub struct Press;

/// Light and button logic.
#[derive(Debug, Default)]
pub struct Panel {
    light: Option<bool>,
    /// Debounced button state and when the raw level last changed.
    stable_down: bool,
    raw_down: bool,
    raw_since_ms: u64,
}

impl Panel {
    /// Call often (every 10 ms): sets the light, returns a press if one completed.
    pub fn tick(&mut self, pins: &mut dyn Pins, recording: bool, now_ms: u64) -> Option<Press> {
        if self.light != Some(recording) {
            pins.set_light(recording);
            self.light = Some(recording);
        }
        let raw = pins.button_down();
        if raw != self.raw_down {
            self.raw_down = raw;
            self.raw_since_ms = now_ms;
        }
        if self.raw_down != self.stable_down && now_ms.saturating_sub(self.raw_since_ms) >= DEBOUNCE_MS {
            self.stable_down = self.raw_down;
            if self.stable_down {
                return Some(Press);
            }
        }
        None
    }
}

/// GPIO through `rppal` (Raspberry Pi). The button is wired to ground with
/// the internal pull-up: low = pressed.
#[cfg(feature = "gpio")]
pub struct RppalPins {
    light: Option<rppal::gpio::OutputPin>,
    button: Option<rppal::gpio::InputPin>,
}

#[cfg(feature = "gpio")]
impl RppalPins {
    pub fn open(light: Option<u8>, button: Option<u8>) -> Result<Self, GpioError> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| GpioError::Unavailable(e.to_string()))?;
        let pin = |n: u8| gpio.get(n).map_err(|e| GpioError::Pin { pin: n, message: e.to_string() });
        Ok(Self {
            light: light.map(|n| pin(n).map(|p| p.into_output_low())).transpose()?,
            button: button.map(|n| pin(n).map(|p| p.into_input_pullup())).transpose()?,
        })
    }
}

#[cfg(feature = "gpio")]
impl Pins for RppalPins {
    fn set_light(&mut self, on: bool) {
        if let Some(p) = self.light.as_mut() {
            if on { p.set_high() } else { p.set_low() }
        }
    }
    fn button_down(&mut self) -> bool {
        self.button.as_ref().is_some_and(|p| p.is_low())
    }
}

/// Opens the pins named in `[gpio]`.
pub fn open(light: Option<u8>, button: Option<u8>) -> Result<Box<dyn Pins>, GpioError> {
    #[cfg(feature = "gpio")]
    {
        Ok(Box::new(RppalPins::open(light, button)?))
    }
    #[cfg(not(feature = "gpio"))]
    {
        let _ = (light, button);
        Err(GpioError::Unavailable("this build has no GPIO support (cargo feature `gpio`)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakePins {
        light: bool,
        light_changes: usize,
        down: bool,
    }
    impl Pins for FakePins {
        fn set_light(&mut self, on: bool) {
            self.light = on;
            self.light_changes += 1;
        }
        fn button_down(&mut self) -> bool {
            self.down
        }
    }

    #[test]
    fn the_light_is_on_exactly_while_recording() {
        let (mut p, mut pins) = (Panel::default(), FakePins::default());
        let recording = [false, false, true, true, true, false, true, false];
        for (i, &r) in recording.iter().enumerate() {
            p.tick(&mut pins, r, i as u64 * 10);
            assert_eq!(pins.light, r, "tick {i}");
        }
        // Set once per change (plus the initial off), not every tick.
        assert_eq!(pins.light_changes, 5);
    }

    #[test]
    fn a_bouncy_press_is_one_event() {
        let (mut p, mut pins) = (Panel::default(), FakePins::default());
        // 10 ms ticks: bounce for 30 ms, hold 200 ms, bounce on release, idle.
        let pattern: Vec<bool> = [true, false, true]
            .into_iter()
            .chain(std::iter::repeat_n(true, 20))
            .chain([false, true, false])
            .chain(std::iter::repeat_n(false, 20))
            .collect();
        let mut presses = 0;
        for (i, &down) in pattern.iter().enumerate() {
            pins.down = down;
            presses += p.tick(&mut pins, false, i as u64 * 10).is_some() as usize;
        }
        assert_eq!(presses, 1);
    }

    #[test]
    fn a_glitch_shorter_than_the_debounce_is_ignored_and_two_presses_are_two() {
        let (mut p, mut pins) = (Panel::default(), FakePins::default());
        let mut t = 0;
        let mut run = |p: &mut Panel, pins: &mut FakePins, down: bool, ms: u64| {
            let mut n = 0;
            for _ in 0..ms / 10 {
                pins.down = down;
                n += p.tick(pins, false, t).is_some() as usize;
                t += 10;
            }
            n
        };
        assert_eq!(run(&mut p, &mut pins, true, 30), 0, "30 ms glitch");
        assert_eq!(run(&mut p, &mut pins, false, 100), 0);
        assert_eq!(run(&mut p, &mut pins, true, 100), 1);
        assert_eq!(run(&mut p, &mut pins, false, 100), 0);
        assert_eq!(run(&mut p, &mut pins, true, 100), 1);
    }

    #[test]
    fn off_a_pi_opening_gpio_is_a_clear_error() {
        // This machine is not a Raspberry Pi (CI and developers' x86-64).
        if std::path::Path::new("/proc/device-tree/model").exists() {
            return;
        }
        let err = open(Some(17), Some(27)).err().expect("no GPIO here").to_string();
        assert!(err.starts_with("GPIO: ") && err.contains("[gpio]"), "{err}");
    }
}
