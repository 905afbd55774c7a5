#pragma once
// A subpool's runner slots: the lock-free decisions that keep "at most max_concurrency of its
// tasks run at once" and "no accepted task is stranded" both true. lib/subpool.cpp runs them
// over the subpool's queue; test/relacy/models.cpp runs the same code under Relacy
// (TIDEPOOL_RELACY, detail/atomics.hpp). What stays outside: the queue (the caller's segmented
// queue), and what a runner job is and where it goes (the caller sends one when told to).
//
// State: `runners_` counts the slots in use, each held by one runner job (queued or running),
// never more than the limit. A runner job runs one task of the queue and then passes its slot on
// to a new runner job or gives it back.
//
// Nothing is stranded (invariant: while the queue is not empty, a runner job exists):
//   * a submitter publishes its task with a seq_cst read-modify-write (the queue's ticket) and
//     then tries to take a slot, starting from a seq_cst load (publish_then_try_take);
//   * a runner that finds the queue empty gives its slot back with a seq_cst read-modify-write,
//     and then looks at the queue once more with seq_cst loads (pass_on_or_give_back).
// Dekker: each side orders its write before its read, so at least one sees the other's. Either
// the submitter sees the freed slot and takes it (and sends a runner job), or the runner sees the
// task and takes a slot again (the submitter may have taken the freed one: then the runner's
// try finds every slot in use, and the submitter's runner job runs the task).
//
// The limit may change while runner jobs run (subpool::set_max_concurrency). The protocol above
// is unchanged; only two decisions also read the limit:
//   * try_take takes a slot only below the limit. It may now fail with fewer than the old limit
//     in use, but still only while runners_ >= limit >= 1: some runner job holds a slot, and its
//     give-back (a seq_cst read-modify-write that comes after our failed seq_cst load in the
//     single total order, since our load saw its slot still counted) is followed by its own look
//     at the queue, which therefore sees the task we saw (or finds it taken). So a failed try
//     still leaves a runner that will look, as in the fixed-limit argument.
//   * a runner over the limit (after a shrink) does not pass its slot on: it takes the give-back
//     path above (over_limit), the same path a runner takes when the queue looks empty, so the
//     Dekker is unchanged; its re-take then obeys the new limit. A runner job that starts over
//     the limit runs no task (lib/subpool.cpp): once the limit is stored, a task starts only
//     while no more slots than the limit are in use (but for one whose runner read the limit
//     just before), and the surplus drains as running tasks end, never interrupting one.
// Growing needs nothing of the protocol: the caller takes the new slots (try_take) while the
// queue looks non-empty and sends a runner job for each.

#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint32_t

#include "tidepool/detail/atomics.hpp"  // for atomic, mutated

namespace tidepool::detail {

class runner_slots {
 public:
  explicit runner_slots(std::size_t limit) noexcept : limit_(limit) {}
  runner_slots(const runner_slots&) = delete;
  runner_slots& operator=(const runner_slots&) = delete;

  // The submitter's half: publish() puts the task in the queue (a seq_cst read-modify-write; it
  // may throw, and then no slot is taken). True if a slot was taken: the caller sends a runner
  // job for it.
  template <class Publish>
  [[nodiscard]] bool publish_then_try_take(Publish&& publish) {
    if (mutated(mutant::subpool_take_before_publish)) {
      // A runner that gives its slot back between the failed try and the publication looks
      // at the queue before the task is there: the task waits with no runner job coming.
      const bool took = try_take();
      publish();
      return took;
    }
    publish();
    return try_take();
  }

  // Takes a slot if one is free. True if taken: the caller sends a runner job for it.
  [[nodiscard]] bool try_take() noexcept {
    // seq_cst load: the read half of the submitter's Dekker (see above).
    std::uint32_t running = runners_.load(std::memory_order_seq_cst);
    while (running < limit()) {
      if (mutated(mutant::subpool_take_slot_without_cas)) {
        runners_.store(running + 1, std::memory_order_seq_cst);  // two takers may both see a free slot
        return true;
      }
      if (runners_.compare_exchange_weak(running, running + 1, std::memory_order_seq_cst, std::memory_order_seq_cst)) {
        return true;
      }
    }
    return false;
  }

  // A runner's half, after it ran (or found no) task. queue_looks_non_empty() reads the queue
  // with seq_cst loads. True if the caller holds a slot (kept, or given back and taken again)
  // and must send a new runner job for it; false if the slot is given back.
  template <class QueueLooksNonEmpty>
  [[nodiscard]] bool pass_on_or_give_back(QueueLooksNonEmpty&& queue_looks_non_empty) noexcept {
    // More to do, within the limit: the slot passes to a new runner job.
    if (queue_looks_non_empty() && !over_limit()) return true;
    // Give the slot back, then look once more: a submitter that found every slot in use relies
    // on us to see its task. seq_cst: the write half of the runner's Dekker.
    runners_.fetch_sub(1, std::memory_order_seq_cst);
    if (mutated(mutant::subpool_no_recheck_after_give_back)) return false;
    return queue_looks_non_empty() && try_take();
  }

  // Takes effect for the next decision of every thread (seq_cst, like every read of it). At
  // least 1: a limit of 0 would leave a queued task with no runner job ever coming.
  void set_limit(std::size_t limit) noexcept { limit_.store(limit, std::memory_order_seq_cst); }
  [[nodiscard]] std::size_t limit() const noexcept { return limit_.load(std::memory_order_seq_cst); }

  // More slots in use than the limit allows (it shrank): a runner job that sees this must not
  // start a task; it gives its slot back (pass_on_or_give_back does, seeing the same).
  [[nodiscard]] bool over_limit() const noexcept { return runners_.load(std::memory_order_seq_cst) > limit(); }

  // Slots in use. Only for tests, while no thread uses the slots.
  [[nodiscard]] std::uint32_t in_use_for_testing() const noexcept { return runners_.load(std::memory_order_relaxed); }

 private:
  detail::atomic<std::size_t> limit_;
  detail::atomic<std::uint32_t> runners_{0};
};

}  // namespace tidepool::detail
