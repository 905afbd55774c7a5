#pragma once
// The parking handshake: how idle workers go to sleep and submitters decide to wake one, so that
// no wake-up is ever lost. lib/parking.cpp runs it over the pool's counters and sleepers list;
// test/relacy/models.cpp runs the same code under Relacy (TIDEPOOL_RELACY, detail/atomics.hpp).
// What stays outside: where tasks are published (the caller's queues), how a worker sleeps and
// is woken (a futex word in the pool, a modelled semaphore in the model), and what else keeps a
// worker awake (shutdown, retirement).
//
// State: `searching` counts workers looking for work; `unparked` counts workers not on the
// sleepers list. The list is guarded by the idle mutex, and `unparked` changes with it, under
// it; `searching` also changes without it when a worker starts or stops a search. Every
// submission reads both counters without the lock. `in_transit` counts the searchers that a
// waker took off the list and that have not resumed yet (see waker below); it only ever adds
// wake-ups to the ones the argument below needs, so nothing in that argument depends on it.
//
// No lost wake-ups (the argument, each half next to its code below):
//   * a submitter publishes its task — a seq_cst read-modify-write (the segmented queue's
//     ticket), or a store followed by a seq_cst fence (a deque, an inbox) — and then reads
//     `searching` and `unparked` with seq_cst loads (wake_needed);
//   * a parking worker leaves `searching` and `unparked` with seq_cst read-modify-writes, and
//     after a seq_cst fence looks at every queue once more (park_or_stay).
// Each side orders its write before its read, so at least one sees the other's write: the
// worker finds the task and takes itself off the list, or the submitter sees nobody searching
// and a sleeper, and wakes one. A submitter that saw a searcher woke nobody: the searcher that
// gives up parks as above, and the last searcher to find a task looks at the queues again after
// its own seq_cst decrement and wakes one more if work is in sight (stop_searching).

#include <algorithm>  // for std::find
#include <cstdint>    // for std::uint32_t
#include <mutex>      // for std::lock_guard
#include <vector>     // for std::vector

#include "tidepool/detail/atomics.hpp"  // for atomic, atomic_thread_fence, mutated

namespace tidepool::detail {

// Sleeper: has a `bool searching`, counted in `searching`; written by its owner, or by the waker
// that takes it off the list (under the idle mutex; the wake-up publishes it to the sleeper).
// Mutex: std::mutex in the pool, a Relacy mutex in the model.
//
// Who wakes, and how many. A worker (a searcher that found a task and sees more, a worker that
// spawned or took a batch) wakes a sleeper only when nobody searches: one searcher at a time,
// each waking the next only once it found work, so a burst costs a chain of single wake-ups
// and no herd. A thread outside the pool also wakes one when every searcher is still in
// transit: woken, counted as searching, but not yet running, and so not looking. Such a
// searcher will take one task; a second task published meanwhile would otherwise wait until it
// runs and passes the baton, and a worker's wake-up is the wrong one. Measured on the project's
// VM, the kernel put a woken worker on its waker's CPU in 94–99 % of wake-ups; a worker that wakes
// another then runs its own task there, and the woken one waits behind it while the other CPU
// idles (those wake-ups: p90 128 µs, p99 308 µs until the woken worker ran, against p90 11 µs
// for an outside submitter's, which goes to sleep or on with its own work). bench_server's
// latency_light (a task every 200 µs): p99 submit→start 111–117 µs → 67–71, the mutex pool's
// figure; p99.9 470–670 → 360–430.
enum class waker_kind { outside, worker };
// A view over the owner's state: four references, built where it is used and inlined away.
template <class Sleeper, class Mutex>
class parking_handshake {
 public:
  using counter = detail::atomic<std::uint32_t>;

  parking_handshake(counter& searching, counter& unparked, counter& in_transit, Mutex& idle_mutex,
                    std::vector<Sleeper*>& sleepers) noexcept
      : searching_(searching), unparked_(unparked), in_transit_(in_transit), idle_mutex_(idle_mutex), sleepers_(sleepers) {}

  // The submitter's half: called after its task is published (see above). True if it must wake
  // a sleeper: nobody searches (a searcher would find the task) and somebody sleeps (fewer
  // unparked than running_workers(), called only then). seq_cst loads: after a publishing
  // read-modify-write (the queue's ticket) nothing else orders them after it; after a seq_cst
  // fence relaxed would do. Both lines are written only when workers change state, so they are
  // usually cached, and on x86-64 a seq_cst load is a plain load. From outside the pool, also
  // true when every searcher is in transit (see waker_kind).
  template <class RunningWorkers>
  [[nodiscard]] bool wake_needed(RunningWorkers&& running_workers, waker_kind who) const noexcept {
    const auto order = mutated(mutant::parking_wake_check_relaxed) ? std::memory_order_relaxed
                                                                    : std::memory_order_seq_cst;
    return nobody_looking(searching_.load(order), who) && unparked_.load(order) < running_workers();
  }

  // An idle worker becomes a searcher if fewer than max_searchers() search; true if it is one.
  template <class MaxSearchers>
  [[nodiscard]] bool try_start_searching(Sleeper& w, MaxSearchers&& max_searchers) noexcept {
    if (w.searching) return true;
    std::uint32_t searchers = searching_.load(std::memory_order_relaxed);
    do {
      if (searchers >= max_searchers()) return false;
    } while (!searching_.compare_exchange_weak(searchers, searchers + 1, std::memory_order_seq_cst,
                                               std::memory_order_relaxed));
    w.searching = true;
    return true;
  }

  // A worker that found a task stops searching. True if it was the last searcher and
  // work_visible() then sees more work: the caller wakes one more, for nobody else is looking.
  // No wake-up is lost: a submitter that saw us searching and woke nobody published its task
  // before reading `searching`, and we look at the queues after our seq_cst decrement, so we see
  // its task here, or it saw no searcher and woke someone.
  template <class WorkVisible>
  [[nodiscard]] bool stop_searching(Sleeper& w, WorkVisible&& work_visible) noexcept {
    if (!w.searching) return false;
    w.searching = false;
    if (searching_.fetch_sub(1, std::memory_order_seq_cst) != 1) return false;
    // Queue emptiness may be read with relaxed loads (a deque's indices): the fence makes the
    // read-modify-write above a full store→load barrier for them too.
    detail::atomic_thread_fence(std::memory_order_seq_cst);
    return work_visible();
  }

  // The parking worker's half. It leaves `searching` (if it still searched) and `unparked` and
  // goes on the list; then, after a seq_cst fence, stay_awake() looks at every queue once more
  // (and at whatever else must keep the worker up). If that says "stay", the worker takes itself
  // off the list, unless a waker already did: then the wake-up is on its way and must be
  // consumed. True: sleep until woken (a waker took or will take it off the list). False: it is
  // off the list, counted unparked again, and a searcher again; go on working.
  //
  // Why a searcher again: what the last look saw may be several tasks, published by submitters
  // that saw this worker searching and so woke nobody. The worker takes one of them and then
  // runs it, maybe for long; the others need someone to wake a sleeper. As a searcher, the task
  // it takes ends its search through stop_searching, which, for the last searcher, looks at the
  // queues again and wakes one more (the baton). Staying as a plain worker instead left them
  // queued behind a running task with workers asleep, for as long as that task ran (the
  // parking_blocking_tasks model, whose tasks hold their workers, found it; so did a burst of
  // blocking tasks on a 4-worker pool, in about 1 round in 8,000).
  template <class StayAwake>
  [[nodiscard]] bool park_or_stay(Sleeper& w, StayAwake&& stay_awake) noexcept {
    // The mutant looks before it announces itself: a task published in between, by a submitter
    // that still counts it searching or unparked, is seen by nobody.
    const bool stay_seen_early = mutated(mutant::parking_recheck_before_leaving_unparked) && stay_awake();
    {
      std::lock_guard lock(idle_mutex_);
      if (w.searching) {
        w.searching = false;
        searching_.fetch_sub(1, std::memory_order_seq_cst);
      }
      unparked_.fetch_sub(1, std::memory_order_seq_cst);
      sleepers_.push_back(&w);  // never allocates: the owner reserved room for every worker
    }
    bool stay = stay_seen_early;
    if (!mutated(mutant::parking_recheck_before_leaving_unparked)) {
      // The store→load barrier of the argument above (the unlock is only a release). It also
      // orders the decrements before whatever else stay_awake() reads (the pool's stopping_).
      if (!mutated(mutant::parking_recheck_without_fence)) detail::atomic_thread_fence(std::memory_order_seq_cst);
      stay = stay_awake();
    }
    if (!stay) return true;
    std::lock_guard lock(idle_mutex_);
    const auto it = std::find(sleepers_.begin(), sleepers_.end(), &w);
    if (it == sleepers_.end()) return true;  // a waker took us off the list: its wake-up is ours to consume
    sleepers_.erase(it);
    unparked_.fetch_add(1, std::memory_order_seq_cst);
    if (!mutated(mutant::parking_stay_without_searching)) {
      w.searching = true;
      searching_.fetch_add(1, std::memory_order_seq_cst);
    }
    return false;
  }

  // A waker's half: takes the sleeper to wake off the list, or null if somebody searches (it
  // will find the work) or nobody sleeps. The sleeper is counted as a searcher from now on, by
  // us, so that the submissions after ours see a searcher and wake nobody else: a burst of
  // submissions costs one wake-up, not one per task. The caller wakes it.
  [[nodiscard]] Sleeper* take_sleeper(waker_kind who) noexcept {
    std::lock_guard lock(idle_mutex_);
    if (!nobody_looking(searching_.load(std::memory_order_relaxed), who) || sleepers_.empty()) return nullptr;
    Sleeper* sleeper = sleepers_.back();
    sleepers_.pop_back();
    sleeper->searching = true;
    searching_.fetch_add(1, std::memory_order_seq_cst);
    unparked_.fetch_add(1, std::memory_order_seq_cst);
    in_transit_.fetch_add(1, std::memory_order_relaxed);
    return sleeper;
  }

  // Shutdown and shrinking: wakes every sleeper (wake(sleeper)), under the lock. The list is
  // cleared in place: it keeps its capacity, so a worker that parks afterwards never allocates.
  template <class Wake>
  void wake_all(Wake&& wake) noexcept {
    std::lock_guard lock(idle_mutex_);
    const auto woken = static_cast<std::uint32_t>(sleepers_.size());
    unparked_.fetch_add(woken, std::memory_order_seq_cst);
    in_transit_.fetch_add(woken, std::memory_order_relaxed);
    for (Sleeper* w : sleepers_) wake(*w);
    sleepers_.clear();
  }

  // The sleeper's last half: it runs again after the wake-up a waker sent when it took it off the
  // list (park_or_stay's true means exactly one is coming).
  void resumed() noexcept { in_transit_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  // Relaxed in_transit: a stale count only adds or omits one of the extra wake-ups; the ones the
  // argument needs (nobody searching) do not read it.
  [[nodiscard]] bool nobody_looking(std::uint32_t searching, waker_kind who) const noexcept {
    if (searching == 0) return true;
    return who == waker_kind::outside && searching <= in_transit_.load(std::memory_order_relaxed);
  }

  counter& searching_;
  counter& unparked_;
  counter& in_transit_;
  Mutex& idle_mutex_;
  std::vector<Sleeper*>& sleepers_;
};

}  // namespace tidepool::detail
