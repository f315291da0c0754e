//! Which simulcast layer of each publisher's video one subscriber gets.
//!
//! A subscriber's downlink (the BWE estimate) is shared: audio first, always; then video, where
//! everyone visible gets their lowest layer before anyone gets a better one, the priority publisher
//! (active speaker, pinned) is raised next, and the others are raised one layer at a time in turns.
//! A tile caps its publisher: a thumbnail never needs the top layer, a hidden tile needs none.
//!
//! Switching costs a keyframe and a visible jump, so it is damped in time:
//! - down as soon as the chosen layers no longer fit the estimate, once the shortfall has lasted
//!   `down_after` (one noisy sample is not a fall; the default 500 ms keeps the reaction under 1 s
//!   when called at least every 500 ms);
//! - up only when the estimate has held at least `up_headroom_percent` of what the higher layers
//!   need for `up_after` without a break (a dip starts the wait again).
//!
//! It never reads a clock: every call takes `now`.

use std::collections::VecDeque;
use std::hash::Hash;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

#[derive(Debug, Clone, Copy)]
pub struct LayerConfig {
    /// How long the chosen layers must be over the estimate before stepping down.
    pub down_after: Duration,
    /// How long the estimate must hold with headroom before stepping up.
    pub up_after: Duration,
    /// The headroom: the estimate must be at least this many percent of what the video needs.
    pub up_headroom_percent: u64,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            down_after: Duration::from_millis(500),
            up_after: Duration::from_millis(2500),
            up_headroom_percent: 130,
        }
    }
}

/// One simulcast layer of a publisher's video as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layer {
    /// Its resolution in pixels (0 if unknown: then it never counts as covering a tile).
    pub width: u32,
    pub height: u32,
    /// Its measured bitrate in bits/s; 0 when the publisher does not send it (inactive).
    pub bitrate: u64,
}

impl Layer {
    pub fn active(&self) -> bool {
        self.bitrate > 0
    }
}

/// How large the subscriber shows a publisher's video, in pixels; 0×0 when it is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tile {
    pub width: u32,
    pub height: u32,
}

impl Tile {
    pub fn new(width: u32, height: u32) -> Tile {
        Tile { width, height }
    }

    fn hidden(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// Whether `layer` is large enough for this tile. A layer up to 1/8 smaller in a dimension
    /// still counts: that much upscaling is hard to see, and the next layer costs about 3× more.
    fn covered_by(&self, layer: &Layer) -> bool {
        u64::from(layer.width) * 8 >= u64::from(self.width) * 7
            && u64::from(layer.height) * 8 >= u64::from(self.height) * 7
    }
}

/// One publisher's video as this subscriber sees it.
#[derive(Debug, Clone, Copy)]
pub struct VideoFeed<'a, K> {
    pub publisher: K,
    /// Its layers, lowest quality first (index 0 = "q", 1 = "h", 2 = "f").
    pub layers: &'a [Layer],
    pub tile: Tile,
}

impl<K> VideoFeed<'_, K> {
    fn bitrate(&self, layer: Option<usize>) -> u64 {
        layer
            .and_then(|l| self.layers.get(l))
            .map_or(0, |l| l.bitrate)
    }

    fn active(&self, layer: usize) -> bool {
        self.layers.get(layer).is_some_and(Layer::active)
    }

    /// The best layer the tile can use: the smallest active one that covers it, else the largest
    /// active one. `None` when hidden or nothing is sent.
    fn cap(&self) -> Option<usize> {
        if self.tile.hidden() {
            return None;
        }
        let mut best = None;
        for (i, layer) in self.layers.iter().enumerate().filter(|(_, l)| l.active()) {
            best = Some(i);
            if self.tile.covered_by(layer) {
                break;
            }
        }
        best
    }

    /// The lowest active layer, if it is within `cap`.
    fn lowest(&self, cap: Option<usize>) -> Option<usize> {
        let cap = cap?;
        (0..=cap).find(|&l| self.active(l))
    }

    /// The next active layer above `layer`, within `cap`.
    fn next_up(&self, layer: usize, cap: Option<usize>) -> Option<usize> {
        let cap = cap?;
        (layer + 1..=cap).find(|&l| self.active(l))
    }

    /// The highest active layer at or below `layer`.
    fn at_most(&self, layer: usize) -> Option<usize> {
        (0..=layer).rev().find(|&l| self.active(l))
    }
}

/// One subscriber's layer choices, one per publisher whose video it receives.
#[derive(Debug, Clone)]
pub struct LayerSelector<K> {
    config: LayerConfig,
    chosen: FxHashMap<K, usize>,
    /// Since when the chosen layers have been over the estimate.
    short_since: Option<Instant>,
    /// The video budget (estimate less audio) over the last `up_after`: each value holds from its
    /// time to the next one's; the first one holds at (or before) the window's start.
    samples: VecDeque<(Instant, u64)>,
}

/// Samples closer together than this are merged (keeping the lower): bounds the history however
/// often `select` is called, at the cost of remembering a dip up to this much longer.
const SAMPLE_SPACING: Duration = Duration::from_millis(50);

impl<K: Copy + Eq + Hash> LayerSelector<K> {
    pub fn new(config: LayerConfig) -> LayerSelector<K> {
        LayerSelector {
            config,
            chosen: FxHashMap::default(),
            short_since: None,
            samples: VecDeque::new(),
        }
    }

    /// The layer chosen for `publisher` by the last [`select`](Self::select), if any.
    pub fn layer(&self, publisher: K) -> Option<usize> {
        self.chosen.get(&publisher).copied()
    }

    /// Every (publisher, layer) chosen by the last `select`.
    pub fn chosen(&self) -> impl Iterator<Item = (K, usize)> + '_ {
        self.chosen.iter().map(|(&k, &l)| (k, l))
    }

    /// When a pending step down falls due: call [`select`](Self::select) then at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.short_since.map(|since| since + self.config.down_after)
    }

    /// Chooses a layer for each feed, given the subscriber's downlink `estimate` and the `audio`
    /// bitrate it receives (both bits/s), and optionally the publisher to favour. Call it with
    /// every new estimate and at least every ~250 ms. Publishers not in `feeds` are forgotten.
    /// Returns the choice for each feed, in the order given.
    pub fn select(
        &mut self,
        now: Instant,
        estimate: u64,
        audio: u64,
        feeds: &[VideoFeed<'_, K>],
        priority: Option<K>,
    ) -> Vec<(K, Option<usize>)> {
        let budget = estimate.saturating_sub(audio);
        self.push_sample(now, budget);
        let priority = priority.and_then(|p| feeds.iter().position(|f| f.publisher == p));
        let caps: Vec<Option<usize>> = feeds.iter().map(VideoFeed::cap).collect();

        // What the tile and the publisher allow now applies at once: a layer no longer sent, or
        // beyond a tile that shrank, steps down to what is allowed.
        let mut current: Vec<Option<usize>> = feeds
            .iter()
            .zip(&caps)
            .map(|(feed, cap)| {
                let layer = self.chosen.get(&feed.publisher).copied()?;
                feed.at_most(layer.min((*cap)?))
            })
            .collect();

        let fair = allocate(&vec![None; feeds.len()], feeds, &caps, budget, priority);

        // Over the estimate: step down to the fair share once it has lasted.
        if total(feeds, &current) > budget {
            let since = *self.short_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.config.down_after {
                for (layer, fair) in current.iter_mut().zip(&fair) {
                    *layer = min(*layer, *fair);
                }
                self.short_since = None;
            }
        } else {
            self.short_since = None;
        }

        // Someone visible without video whom the budget has room for (newly shown, or a new
        // publisher): they get their lowest layer now, the others step down to their fair share
        // if that is what makes room.
        if current
            .iter()
            .zip(&fair)
            .any(|(c, f)| c.is_none() && f.is_some())
        {
            for (i, (layer, fair)) in current.iter_mut().zip(&fair).enumerate() {
                *layer = match *layer {
                    Some(_) => min(*layer, *fair),
                    None => fair.and_then(|_| feeds[i].lowest(caps[i])),
                };
            }
        }

        // Up, when the estimate has held with headroom. Take only the raises if the others'
        // layers leave room for them; else the fair share at that budget as a whole (someone
        // may step down so that others step up, but never to no video: that would flap with the
        // step above giving it back).
        if let Some(held) = self.held(now) {
            let up_budget = held.saturating_mul(100) / self.config.up_headroom_percent.max(1);
            let floor: Vec<Option<usize>> = current
                .iter()
                .zip(feeds.iter().zip(&caps))
                .map(|(layer, (feed, cap))| layer.and_then(|_| feed.lowest(*cap)))
                .collect();
            let target = allocate(&floor, feeds, &caps, up_budget, priority);
            if current.iter().zip(&target).any(|(c, t)| t > c) {
                let raised: Vec<Option<usize>> = current
                    .iter()
                    .zip(&target)
                    .map(|(c, t)| (*c).max(*t))
                    .collect();
                current = if total(feeds, &raised) <= up_budget {
                    raised
                } else {
                    target
                };
            }
        }

        self.chosen.clear();
        for (feed, layer) in feeds.iter().zip(&current) {
            if let Some(layer) = layer {
                self.chosen.insert(feed.publisher, *layer);
            }
        }
        feeds.iter().map(|f| f.publisher).zip(current).collect()
    }

    fn push_sample(&mut self, now: Instant, budget: u64) {
        match self.samples.back_mut() {
            Some((at, value)) if now.saturating_duration_since(*at) < SAMPLE_SPACING => {
                *value = (*value).min(budget);
            }
            _ => self.samples.push_back((now, budget)),
        }
        // Drop samples whose successor already held at the window's start.
        while self
            .samples
            .get(1)
            .is_some_and(|(at, _)| *at + self.config.up_after <= now)
        {
            self.samples.pop_front();
        }
    }

    /// The lowest budget over the last `up_after`, once there is that much history.
    fn held(&self, now: Instant) -> Option<u64> {
        let (first, _) = self.samples.front()?;
        if *first + self.config.up_after > now {
            return None;
        }
        self.samples.iter().map(|(_, v)| *v).min()
    }
}

/// The set of (publisher, layer) that at least one of `selectors` receives. The layers of a
/// publisher not in it could be paused at the publisher; the caller should then keep offering a
/// paused layer to the selectors with its last measured bitrate, since an inactive layer (bitrate 0)
/// is never chosen and so would never be asked for again.
pub fn wanted_layers<'a, K: Copy + Eq + Hash + 'a>(
    selectors: impl IntoIterator<Item = &'a LayerSelector<K>>,
) -> FxHashSet<(K, usize)> {
    selectors.into_iter().flat_map(|s| s.chosen()).collect()
}

/// `None` (no video) is the lowest choice.
fn min(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    a.zip(b).map(|(a, b)| a.min(b))
}

fn total<K>(feeds: &[VideoFeed<'_, K>], layers: &[Option<usize>]) -> u64 {
    feeds
        .iter()
        .zip(layers)
        .map(|(f, l)| f.bitrate(*l))
        .fold(0, u64::saturating_add)
}

/// Shares `budget` from `start`: everyone without video gets their lowest layer (priority first,
/// then in order), then the priority publisher is raised as far as it goes, then the others one
/// layer each per round while anything still fits.
fn allocate<K>(
    start: &[Option<usize>],
    feeds: &[VideoFeed<'_, K>],
    caps: &[Option<usize>],
    budget: u64,
    priority: Option<usize>,
) -> Vec<Option<usize>> {
    let mut out = start.to_vec();
    let mut used = total(feeds, &out);
    let order: Vec<usize> = priority
        .into_iter()
        .chain((0..feeds.len()).filter(|&i| Some(i) != priority))
        .collect();
    // Moves feed `i` to `to` if the total still fits.
    let mut try_set = |out: &mut Vec<Option<usize>>, i: usize, to: usize| {
        let feed = &feeds[i];
        let next =
            (used.saturating_sub(feed.bitrate(out[i]))).saturating_add(feed.bitrate(Some(to)));
        if next > budget {
            return false;
        }
        used = next;
        out[i] = Some(to);
        true
    };
    for &i in &order {
        if out[i].is_none() {
            if let Some(lowest) = feeds[i].lowest(caps[i]) {
                try_set(&mut out, i, lowest);
            }
        }
    }
    if let Some(p) = priority {
        while let Some(next) = out[p].and_then(|l| feeds[p].next_up(l, caps[p])) {
            if !try_set(&mut out, p, next) {
                break;
            }
        }
    }
    loop {
        let mut raised = false;
        for &i in order.iter().filter(|&&i| Some(i) != priority) {
            if let Some(next) = out[i].and_then(|l| feeds[i].next_up(l, caps[i])) {
                raised |= try_set(&mut out, i, next);
            }
        }
        if !raised {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: u64 = 150_000;
    const MID: u64 = 500_000;
    const HIGH: u64 = 1_500_000;

    fn layers() -> [Layer; 3] {
        [
            Layer {
                width: 320,
                height: 180,
                bitrate: LOW,
            },
            Layer {
                width: 640,
                height: 360,
                bitrate: MID,
            },
            Layer {
                width: 1280,
                height: 720,
                bitrate: HIGH,
            },
        ]
    }

    const LARGE: Tile = Tile {
        width: 1280,
        height: 720,
    };
    const THUMB: Tile = Tile {
        width: 320,
        height: 180,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A subscriber and a clock, calling `select` every 100 ms.
    struct Sub {
        sel: LayerSelector<u32>,
        t0: Instant,
        now: Duration,
    }

    impl Sub {
        fn new() -> Sub {
            Sub {
                sel: LayerSelector::new(LayerConfig::default()),
                t0: Instant::now(),
                now: Duration::ZERO,
            }
        }

        /// One call at the current time, then the clock moves 100 ms.
        fn step(
            &mut self,
            estimate: u64,
            audio: u64,
            feeds: &[VideoFeed<'_, u32>],
            priority: Option<u32>,
        ) -> Vec<Option<usize>> {
            let out = self
                .sel
                .select(self.t0 + self.now, estimate, audio, feeds, priority);
            self.now += ms(100);
            out.into_iter().map(|(_, l)| l).collect()
        }

        /// Calls for `duration`, returning the last choices.
        fn hold(
            &mut self,
            duration: Duration,
            estimate: u64,
            audio: u64,
            feeds: &[VideoFeed<'_, u32>],
            priority: Option<u32>,
        ) -> Vec<Option<usize>> {
            let end = self.now + duration;
            let mut last = self.step(estimate, audio, feeds, priority);
            while self.now < end {
                last = self.step(estimate, audio, feeds, priority);
            }
            last
        }
    }

    fn l_bitrate(layer: usize) -> u64 {
        layers()[layer].bitrate
    }

    fn feed(publisher: u32, layers: &[Layer], tile: Tile) -> VideoFeed<'_, u32> {
        VideoFeed {
            publisher,
            layers,
            tile,
        }
    }

    #[test]
    fn starts_low_and_takes_the_highest_layer_that_fits() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE)];
        let mut s = Sub::new();
        assert_eq!(s.step(1_000_000, 0, &feeds, None), [Some(0)], "start low");
        assert_eq!(s.hold(ms(3000), 1_000_000, 0, &feeds, None), [Some(1)]);
        // 1 Mbit/s is not enough for the 1.5 Mbit/s layer, however long it lasts.
        assert_eq!(s.hold(ms(10_000), 1_000_000, 0, &feeds, None), [Some(1)]);
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(3000), 3_000_000, 0, &feeds, None), [Some(2)]);
        // Nothing fits: no video rather than video that cannot get through.
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(3000), 100_000, 0, &feeds, None), [None]);
    }

    #[test]
    fn audio_is_reserved_first() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE)];
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(3000), 3_000_000, 0, &feeds, None), [Some(2)]);
        // 1.6 Mbit/s still carries the 1.5 Mbit/s layer...
        assert_eq!(s.hold(ms(3000), 1_600_000, 0, &feeds, None), [Some(2)]);
        // ...but not with 200 kbit/s of audio besides.
        assert_eq!(
            s.hold(ms(3000), 1_600_000, 200_000, &feeds, None),
            [Some(1)]
        );
        // And the headroom for going up counts without the audio: 2.1 Mbit/s less 200 kbit/s is
        // under 1.3 × 1.5 Mbit/s.
        assert_eq!(
            s.hold(ms(5000), 2_100_000, 200_000, &feeds, None),
            [Some(1)]
        );
        assert_eq!(
            s.hold(ms(5000), 2_100_000, 100_000, &feeds, None),
            [Some(2)]
        );
        // Audio alone over the estimate: no video at all.
        assert_eq!(s.hold(ms(1000), 500_000, 600_000, &feeds, None), [None]);
    }

    #[test]
    fn the_tile_caps_the_layer() {
        let l = layers();
        let feeds = [
            feed(1, &l, THUMB),
            feed(2, &l, Tile::new(600, 340)),
            feed(3, &l, Tile::new(800, 450)),
            feed(4, &l, LARGE),
            feed(5, &l, Tile::new(1920, 1080)),
            feed(6, &l, Tile::new(200, 100)),
        ];
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(3000), 50_000_000, 0, &feeds, None),
            [Some(0), Some(1), Some(2), Some(2), Some(2), Some(0)]
        );
    }

    #[test]
    fn a_hidden_tile_gets_nothing_at_once_and_video_again_when_shown() {
        let l = layers();
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(3000), 10_000_000, 0, &[feed(1, &l, LARGE)], None),
            [Some(2)]
        );
        assert_eq!(
            s.step(10_000_000, 0, &[feed(1, &l, Tile::new(0, 0))], None),
            [None]
        );
        assert_eq!(s.sel.layer(1), None);
        assert_eq!(
            s.step(10_000_000, 0, &[feed(1, &l, Tile::new(640, 0))], None),
            [None]
        );
        // Shown again with the estimate long steady: straight to the top.
        assert_eq!(
            s.step(10_000_000, 0, &[feed(1, &l, LARGE)], None),
            [Some(2)]
        );
        // A tile that shrinks to a thumbnail steps down at once.
        assert_eq!(
            s.step(10_000_000, 0, &[feed(1, &l, THUMB)], None),
            [Some(0)]
        );
    }

    #[test]
    fn steps_down_within_a_second_of_a_fall_but_not_for_one_noisy_sample() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE)];
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(3000), 3_000_000, 0, &feeds, None), [Some(2)]);
        // One low sample, then back up: stays.
        assert_eq!(s.step(1_000_000, 0, &feeds, None), [Some(2)]);
        assert!(s.sel.poll_timeout().is_some());
        assert_eq!(s.hold(ms(2000), 3_000_000, 0, &feeds, None), [Some(2)]);
        assert_eq!(s.sel.poll_timeout(), None);
        // A real fall at `fall`.
        let fall = s.now;
        let mut switched = None;
        for _ in 0..20 {
            let at = s.now;
            if s.step(1_000_000, 0, &feeds, None) == [Some(1)] {
                switched = Some(at - fall);
                break;
            }
        }
        let after = switched.expect("stepped down");
        assert!(after <= ms(1000), "{after:?}");
        assert_eq!(after, ms(500), "the default persistence");
        // The deadline is told in advance.
        let mut s = Sub::new();
        s.hold(ms(3000), 3_000_000, 0, &feeds, None);
        let at = s.t0 + s.now;
        s.step(1_000_000, 0, &feeds, None);
        assert_eq!(s.sel.poll_timeout(), Some(at + ms(500)));
    }

    #[test]
    fn steps_up_only_after_holding_enough_headroom_for_the_whole_wait() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE)];
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(3000), 1_000_000, 0, &feeds, None), [Some(1)]);
        // Just under 1.3 × 1.5 Mbit/s: never.
        assert_eq!(s.hold(ms(10_000), 1_949_999, 0, &feeds, None), [Some(1)]);
        // Exactly 1.3 ×: after 2.5 s, not before.
        let rise = s.now;
        let mut switched = None;
        for _ in 0..40 {
            let at = s.now;
            if s.step(1_950_000, 0, &feeds, None) == [Some(2)] {
                switched = Some(at - rise);
                break;
            }
        }
        assert_eq!(switched, Some(ms(2500)));
    }

    #[test]
    fn a_dip_restarts_the_wait_for_going_up() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE)];
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(3000), 1_000_000, 0, &feeds, None), [Some(1)]);
        let rise = s.now;
        assert_eq!(s.hold(ms(2000), 2_000_000, 0, &feeds, None), [Some(1)]);
        // 100 ms at 1 Mbit/s at rise + 2 s: still enough for the layer held, so no step down.
        assert_eq!(s.now - rise, ms(2000));
        assert_eq!(s.step(1_000_000, 0, &feeds, None), [Some(1)]);
        let mut switched = None;
        for _ in 0..60 {
            let at = s.now;
            if s.step(2_000_000, 0, &feeds, None) == [Some(2)] {
                switched = Some(at - rise);
                break;
            }
        }
        // 2.5 s after the dip ended (at rise + 2.1 s), not 2.5 s after the rise.
        assert_eq!(switched, Some(ms(4600)));
    }

    #[test]
    fn a_tight_budget_is_shared_fairly() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE), feed(2, &l, LARGE), feed(3, &l, LARGE)];
        // Room for three low layers or one middle one: everyone gets low.
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(5000), 500_000, 0, &feeds, None),
            [Some(0), Some(0), Some(0)]
        );
        // Room (with headroom) for three middle layers, or one top and two low: three middle.
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(5000), 2_500_000, 0, &feeds, None),
            [Some(1), Some(1), Some(1)]
        );
        // Someone alone at the top; two others join: they get video at once, and with the
        // estimate steady the budget is shared again right away.
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(5000), 2_500_000, 0, &feeds[..1], None), [Some(2)]);
        assert_eq!(
            s.step(2_500_000, 0, &feeds, None),
            [Some(1), Some(1), Some(1)]
        );
        // The same join with the estimate tight: the one at the top makes room at once.
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(5000), 2_000_000, 0, &feeds[..1], None), [Some(2)]);
        let joined = s.step(1_700_000, 0, &feeds, None);
        assert!(joined.iter().all(Option::is_some), "{joined:?}");
        let used: u64 = joined.iter().map(|l| l.map_or(0, l_bitrate)).sum();
        assert!(used <= 1_700_000, "{joined:?}");
    }

    #[test]
    fn sharing_never_takes_video_away_to_raise_someone_else() {
        // A screen share with one 300 kbit/s layer and two cameras whose steps are cheaper.
        let share = [Layer {
            width: 1280,
            height: 720,
            bitrate: 300_000,
        }];
        let cam = [
            Layer {
                width: 320,
                height: 180,
                bitrate: 100_000,
            },
            Layer {
                width: 640,
                height: 360,
                bitrate: 200_000,
            },
        ];
        let feeds = [
            feed(1, &cam, LARGE),
            feed(2, &cam, LARGE),
            feed(3, &share, LARGE),
        ];
        let mut s = Sub::new();
        // 520 kbit/s carries all three at their lowest; with headroom (400 kbit/s) the cameras
        // could both go up only by dropping the share.
        s.hold(ms(5000), 520_000, 0, &feeds, None);
        for _ in 0..30 {
            assert_eq!(
                s.step(520_000, 0, &feeds, None),
                [Some(0), Some(0), Some(0)]
            );
        }
    }

    #[test]
    fn the_priority_publisher_is_raised_first() {
        let l = layers();
        let feeds = [feed(1, &l, LARGE), feed(2, &l, LARGE), feed(3, &l, LARGE)];
        let mut s = Sub::new();
        // 3 Mbit/s / 1.3 = 2.3 Mbit/s: everyone low, the speaker high, then one more middle.
        assert_eq!(
            s.hold(ms(5000), 3_000_000, 0, &feeds, Some(2)),
            [Some(1), Some(2), Some(0)]
        );
        // The speaker changes: the new one goes up, at once since the estimate is steady.
        assert_eq!(
            s.step(3_000_000, 0, &feeds, Some(3)),
            [Some(1), Some(0), Some(2)]
        );
        // Without a priority the same budget is three middle layers.
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(5000), 3_000_000, 0, &feeds, None),
            [Some(1), Some(1), Some(1)]
        );
        // Even the priority never gets a layer its tile does not need.
        let thumb = [feed(1, &l, THUMB)];
        let mut s = Sub::new();
        assert_eq!(s.hold(ms(5000), 9_000_000, 0, &thumb, Some(1)), [Some(0)]);
    }

    #[test]
    fn inactive_layers_are_skipped() {
        let mut l = layers();
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(3000), 10_000_000, 0, &[feed(1, &l, LARGE)], None),
            [Some(2)]
        );
        // The publisher stops sending its top layer: down to the middle one at once.
        l[2].bitrate = 0;
        assert_eq!(
            s.step(10_000_000, 0, &[feed(1, &l, LARGE)], None),
            [Some(1)]
        );
        // A thumbnail whose low layer is not sent gets the middle one.
        l = layers();
        l[0].bitrate = 0;
        let mut s = Sub::new();
        assert_eq!(
            s.hold(ms(3000), 10_000_000, 0, &[feed(1, &l, THUMB)], None),
            [Some(1)]
        );
        // Nothing sent at all: nothing chosen.
        let none = [Layer::default(); 3];
        assert_eq!(
            s.step(10_000_000, 0, &[feed(1, &none, LARGE)], None),
            [None]
        );
        assert_eq!(s.step(10_000_000, 0, &[feed(1, &[], LARGE)], None), [None]);
    }

    #[test]
    fn publishers_that_leave_are_forgotten() {
        let l = layers();
        let mut s = Sub::new();
        s.hold(
            ms(3000),
            10_000_000,
            0,
            &[feed(1, &l, LARGE), feed(2, &l, THUMB)],
            None,
        );
        assert_eq!(s.sel.layer(1), Some(2));
        s.step(10_000_000, 0, &[feed(2, &l, THUMB)], None);
        assert_eq!(s.sel.layer(1), None);
        assert_eq!(s.sel.chosen().collect::<Vec<_>>(), [(2, 0)]);
    }

    #[test]
    fn wanted_layers_are_the_union_over_subscribers() {
        let l = layers();
        let mut a = Sub::new();
        let mut b = Sub::new();
        let mut c = Sub::new();
        a.hold(
            ms(3000),
            10_000_000,
            0,
            &[feed(1, &l, LARGE), feed(2, &l, THUMB)],
            None,
        );
        b.hold(
            ms(3000),
            10_000_000,
            0,
            &[
                feed(1, &l, THUMB),
                feed(2, &l, THUMB),
                feed(3, &l, Tile::new(0, 0)),
            ],
            None,
        );
        c.hold(ms(3000), 10_000_000, 0, &[feed(1, &l, LARGE)], None);
        let wanted = wanted_layers([&a.sel, &b.sel, &c.sel]);
        let mut wanted: Vec<_> = wanted.into_iter().collect();
        wanted.sort();
        // Nobody needs 1's middle layer, 2's upper ones, or anything of 3.
        assert_eq!(wanted, [(1, 0), (1, 2), (2, 0)]);
        assert!(wanted_layers(std::iter::empty::<&LayerSelector<u32>>()).is_empty());
    }
}
