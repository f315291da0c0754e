//! Dominant-speaker detection from RFC 6464 audio levels (no decoding).
//!
//! Each audio packet carries the sender's level in -dBov (0 loud … 127 silent). Per participant we keep
//! how much of each 100 ms interval was voice, smoothed into a short score (≈ last 0.5 s), and how long
//! they have been talking without a real pause. A challenger takes over only after talking for
//! `min_speech` (a cough or a "yes" is shorter) *and* scoring clearly above the current speaker, and
//! never sooner than `hold` after the last switch, so overlapping talk cannot flap the view. Silence
//! keeps the last speaker; muting or leaving removes them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parley_proto::ParticipantId;

#[derive(Debug, Clone, Copy)]
pub struct SpeakerConfig {
    /// Packets at or louder than this (-dBov, smaller is louder) count as voice.
    pub voice_level: u8,
    /// Continuous talk needed before someone can take over.
    pub min_speech: Duration,
    /// A pause shorter than this does not end a stretch of talk.
    pub max_pause: Duration,
    /// Least time between two switches.
    pub hold: Duration,
    /// A challenger must score this much higher than the current speaker (0.2 = 20 %).
    pub margin: f32,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            voice_level: 50,
            min_speech: Duration::from_millis(400),
            max_pause: Duration::from_millis(250),
            hold: Duration::from_millis(1000),
            margin: 0.2,
        }
    }
}

/// How often [`SpeakerDetector::tick`] should run.
pub const SPEAKER_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone)]
struct Activity {
    /// Packets and voiced packets since the last tick.
    packets: u32,
    voiced: u32,
    /// Loudest level since the last tick, as 0..=1 for meters.
    peak: f32,
    /// Smoothed share of voice over the last ~0.5 s, 0..=1.
    score: f32,
    /// Start of the current stretch of talk, if talking.
    talking_since: Option<Instant>,
    last_voice: Option<Instant>,
    /// Level to show on meters, 0..=1, decays after talk ends.
    meter: f32,
}

#[derive(Debug, Clone)]
pub struct SpeakerDetector {
    config: SpeakerConfig,
    activity: HashMap<ParticipantId, Activity>,
    current: Option<ParticipantId>,
    last_switch: Option<Instant>,
    switches: u64,
}

impl SpeakerDetector {
    pub fn new(config: SpeakerConfig) -> Self {
        SpeakerDetector {
            config,
            activity: HashMap::new(),
            current: None,
            last_switch: None,
            switches: 0,
        }
    }

    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    /// How many times the speaker changed so far.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// One audio packet's level from `who`, in -dBov (0 loudest, 127 silence).
    pub fn on_level(&mut self, who: ParticipantId, level: u8, now: Instant) {
        let level = level.min(127);
        let a = self.activity.entry(who).or_default();
        a.packets += 1;
        let loudness = 1.0 - f32::from(level) / 127.0;
        a.peak = a.peak.max(loudness);
        if level <= self.config.voice_level {
            a.voiced += 1;
            if a.talking_since.is_none() {
                a.talking_since = Some(now);
            }
            a.last_voice = Some(now);
        }
    }

    /// Forgets `who` (muted or left). If they were the speaker, the loudest other talker takes over.
    /// Returns the new speaker when it changed.
    pub fn remove(&mut self, who: ParticipantId, now: Instant) -> Option<Option<ParticipantId>> {
        self.activity.remove(&who);
        if self.current != Some(who) {
            return None;
        }
        let next = self
            .activity
            .iter()
            .filter(|(_, a)| a.talking_since.is_some())
            .max_by(|x, y| x.1.score.total_cmp(&y.1.score))
            .map(|(id, _)| *id);
        self.switch_to(next, now);
        Some(next)
    }

    /// Meter levels (0..=1) per participant, for the `levels` message.
    pub fn meters(&self) -> impl Iterator<Item = (ParticipantId, f32)> + '_ {
        self.activity.iter().map(|(id, a)| (*id, a.meter))
    }

    /// Closes the current interval; call every [`SPEAKER_TICK`]. Returns the new speaker when it changed.
    pub fn tick(&mut self, now: Instant) -> Option<ParticipantId> {
        let cfg = self.config;
        for a in self.activity.values_mut() {
            let share = if a.packets == 0 {
                0.0
            } else {
                a.voiced as f32 / a.packets as f32
            };
            // ≈ 0.5 s time constant at 100 ms ticks.
            a.score = a.score * 0.8 + share * 0.2;
            a.meter = if a.packets == 0 {
                a.meter * 0.5
            } else {
                a.peak.max(a.meter * 0.5)
            };
            a.packets = 0;
            a.voiced = 0;
            a.peak = 0.0;
            if a.last_voice
                .is_some_and(|t| now.saturating_duration_since(t) > cfg.max_pause)
            {
                a.talking_since = None;
            }
        }

        if self
            .last_switch
            .is_some_and(|t| now.saturating_duration_since(t) < cfg.hold)
        {
            return None;
        }
        let current_score = self
            .current
            .and_then(|c| self.activity.get(&c))
            .filter(|a| a.talking_since.is_some())
            .map_or(0.0, |a| a.score);
        let challenger = self
            .activity
            .iter()
            .filter(|(id, _)| Some(**id) != self.current)
            // The voiced span counts, not the pause after it: a 240 ms cough never qualifies.
            .filter(|(_, a)| match (a.talking_since, a.last_voice) {
                (Some(since), Some(last)) => {
                    last.saturating_duration_since(since) >= cfg.min_speech
                }
                _ => false,
            })
            .max_by(|x, y| x.1.score.total_cmp(&y.1.score))
            .map(|(id, a)| (*id, a.score));
        let (id, score) = challenger?;
        if score > current_score * (1.0 + cfg.margin) && score > 0.1 {
            self.switch_to(Some(id), now);
            return Some(id);
        }
        None
    }

    fn switch_to(&mut self, next: Option<ParticipantId>, now: Instant) {
        if self.current != next {
            self.current = next;
            self.last_switch = Some(now);
            self.switches += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: u8 = 25;
    const QUIET: u8 = 127;

    /// Feeds 20 ms packets for `ms` milliseconds, with `levels(participant, t)` deciding each level,
    /// ticking every 100 ms. Returns every switch with its time in ms.
    struct Sim {
        det: SpeakerDetector,
        start: Instant,
        t_ms: u64,
        switches: Vec<(u64, ParticipantId)>,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                det: SpeakerDetector::new(SpeakerConfig::default()),
                start: Instant::now(),
                t_ms: 0,
                switches: Vec::new(),
            }
        }

        fn run(&mut self, ms: u64, level: impl Fn(ParticipantId, u64) -> Option<u8>) {
            let end = self.t_ms + ms;
            while self.t_ms < end {
                let now = self.start + Duration::from_millis(self.t_ms);
                for p in 1..=3 {
                    if let Some(l) = level(p, self.t_ms) {
                        self.det.on_level(p, l, now);
                    }
                }
                self.t_ms += 20;
                if self.t_ms.is_multiple_of(100) {
                    let now = self.start + Duration::from_millis(self.t_ms);
                    if let Some(s) = self.det.tick(now) {
                        self.switches.push((self.t_ms, s));
                    }
                }
            }
        }
    }

    fn only(who: ParticipantId) -> impl Fn(ParticipantId, u64) -> Option<u8> {
        move |p, _| Some(if p == who { LOUD } else { QUIET })
    }

    #[test]
    fn steady_speaker_is_found_within_a_second_and_kept() {
        let mut s = Sim::new();
        s.run(5000, only(2));
        assert_eq!(s.switches.len(), 1, "{:?}", s.switches);
        let (at, who) = s.switches[0];
        assert_eq!(who, 2);
        assert!(at <= 1000, "took {at} ms");
        assert_eq!(s.det.current(), Some(2));
    }

    #[test]
    fn turn_taking_follows_within_a_second() {
        let mut s = Sim::new();
        s.run(3000, only(1));
        s.run(500, |_, _| Some(QUIET));
        let started = s.t_ms;
        s.run(3000, only(3));
        assert_eq!(s.det.current(), Some(3));
        let (at, who) = *s.switches.last().unwrap();
        assert_eq!(who, 3);
        assert!(at - started <= 1000, "took {} ms", at - started);
        assert_eq!(s.switches.len(), 2);
    }

    #[test]
    fn a_cough_does_not_switch() {
        let mut s = Sim::new();
        s.run(3000, only(1));
        // 2 coughs for 240 ms while 1 keeps talking, then again while 1 pauses.
        s.run(240, |p, _| Some(if p == 3 { QUIET } else { LOUD }));
        s.run(2000, only(1));
        s.run(240, only(2));
        s.run(2000, |_, _| Some(QUIET));
        assert_eq!(s.det.current(), Some(1), "{:?}", s.switches);
        assert_eq!(s.switches.len(), 1);
    }

    #[test]
    fn overlapping_talk_does_not_flap() {
        let mut s = Sim::new();
        s.run(2000, only(1));
        // 1 and 2 talk over each other in alternating 200 ms bursts for 6 s.
        s.run(6000, |p, t| match p {
            1 => Some(if (t / 200) % 2 == 0 { LOUD } else { QUIET }),
            2 => Some(if (t / 200) % 2 == 1 { LOUD } else { QUIET }),
            _ => Some(QUIET),
        });
        for pair in s.switches.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= 1000, "flapped: {:?}", s.switches);
        }
        // Two people saying "yes" at once, both short: no switch at all.
        let before = s.switches.len();
        s.run(2000, only(1));
        let steady = s.switches.len();
        s.run(200, |p, _| Some(if p == 3 { QUIET } else { LOUD }));
        s.run(200, |_, _| Some(QUIET));
        assert_eq!(s.switches.len(), steady, "short overlap switched");
        assert!(before <= steady);
    }

    #[test]
    fn silence_keeps_the_last_speaker() {
        let mut s = Sim::new();
        s.run(2000, only(2));
        s.run(10_000, |_, _| Some(QUIET));
        assert_eq!(s.det.current(), Some(2));
        // No packets at all (DTX) keeps them too.
        s.run(5000, |_, _| None);
        assert_eq!(s.det.current(), Some(2));
    }

    #[test]
    fn mute_removes_the_speaker() {
        let mut s = Sim::new();
        s.run(2000, only(1));
        assert_eq!(s.det.current(), Some(1));
        let now = s.start + Duration::from_millis(s.t_ms);
        assert_eq!(s.det.remove(1, now), Some(None), "nobody else talks");
        assert_eq!(s.det.current(), None);
        // While 1 stays muted (no packets), 3 takes over when talking.
        s.run(3000, |p, _| {
            (p != 1).then_some(if p == 3 { LOUD } else { QUIET })
        });
        assert_eq!(s.det.current(), Some(3));
        // Removing someone else does not change the speaker.
        let now = s.start + Duration::from_millis(s.t_ms);
        assert_eq!(s.det.remove(2, now), None);
    }

    #[test]
    fn meters_follow_loudness() {
        let mut s = Sim::new();
        s.run(500, only(1));
        let meters: HashMap<_, _> = s.det.meters().collect();
        assert!(meters[&1] > 0.5, "{meters:?}");
        assert!(meters[&2] < 0.05, "{meters:?}");
    }
}
