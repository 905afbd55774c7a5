// What an idle worker does, and who wakes it.
//
// A worker that finds no task becomes a *searcher*: it keeps looking for a short, bounded time
// (pauses, then yields), because work often arrives within microseconds. Then it parks: it
// sleeps on a futex until woken. At most half the workers (at least one) search at once, so an
// idle pool does not have every core spinning (the rule Go's and Tokio's schedulers use).
//
// Who wakes whom:
//   * A submission wakes one parked worker if nobody is searching: a searcher would find the
//     task anyway, and waking more would only make them compete.
//   * A searcher that finds a task, if it was the last searcher, wakes one more parked worker:
//     where there was one task there are often more, and nobody else is looking.
//   * A worker that was just woken and finds a task at once does the same if nobody is
//     searching. Without this the chain breaks: submitters that saw a searcher did not wake
//     anyone, the searcher woke one worker, and that worker took a task without searching, so
//     nobody woke a third for the third task (a burst of three tasks on three workers would
//     leave one task waiting for a busy worker while another sleeps).
//
// No lost wake-ups. A parking worker announces itself (parked_, seq_cst read-modify-write), then
// looks at every queue once more before it sleeps; a submitter publishes its task (a seq_cst
// read-modify-write for the global queue, a plain store plus a seq_cst fence for a deque), then
// reads parked_ and searching_. Each side orders its write before its read, so at least one of
// them sees the other: either the worker finds the task, or the submitter sees the parked worker
// and wakes it. The epoch the worker sleeps on is read before it announces itself, so a wake-up
// that lands between the re-check and the sleep makes the futex wait return at once.
// A searcher that gives up does the same: it stops counting as a searcher (seq_cst) and then
// re-checks the queues in park(), so a submitter that saw it searching and did not wake anyone
// is covered too.

#include <thread>  // for std::this_thread::yield

#include "pool_core.hpp"
#include "tidepool/detail/cpu_pause.hpp"
#include "tidepool/detail/futex.hpp"

namespace tidepool::detail {
namespace {

// How long a searcher looks before parking: `spin_rounds` rounds with `pauses_per_round`
// cpu_pause between them, then `yield_rounds` rounds with a yield between them. A round looks at
// the worker's deque, the global queue and every other deque. Tuned guess, measured in perf/:
// about 10–50 µs in all, enough to catch a task submitted right after the last one finished,
// short enough that an idle pool shows ~0% CPU.
constexpr int spin_rounds = 32;
constexpr int pauses_per_round = 16;
constexpr int yield_rounds = 4;

}  // namespace

task_node* pool_core::search(worker& w) noexcept {
  // Become a searcher, unless enough workers already are.
  std::uint32_t searchers = searching_.load(std::memory_order_relaxed);
  do {
    if (searchers >= max_searching_) return nullptr;
  } while (!searching_.compare_exchange_weak(searchers, searchers + 1, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));

  task_node* found = nullptr;
  for (int round = 0; round < spin_rounds + yield_rounds && found == nullptr; ++round) {
    if (round < spin_rounds) {
      for (int i = 0; i < pauses_per_round; ++i) cpu_pause();
    } else {
      std::this_thread::yield();
    }
    found = find_task(w);
  }

  const bool last_searcher = searching_.fetch_sub(1, std::memory_order_seq_cst) == 1;
  if (found != nullptr && last_searcher && parked_.load(std::memory_order_seq_cst) > 0) wake_one(&w);
  return found;
}

bool pool_core::work_visible() noexcept {
  if (!global_.empty_estimate()) return true;
  for (const auto& other : workers_) {
    if (!other->deque.empty_estimate()) return true;
  }
  return false;
}

bool pool_core::park(worker& w) noexcept {
  const std::uint32_t epoch = wake_epoch_.load(std::memory_order_seq_cst);
  parked_.fetch_add(1, std::memory_order_seq_cst);
  // Pairs with stop_and_wait(): our final counts (written before) against its stopping_ flag.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) notify_drain();

  bool keep_going = true;
  if (work_visible()) {
    // Work arrived while we were announcing ourselves: go back to it.
  } else if (shutdown_.load(std::memory_order_seq_cst)) {
    keep_going = false;  // nothing left to run, and nothing more will come
  } else {
    w.counters.parks.add();
    futex_wait(wake_epoch_, epoch);
    w.just_woken = true;
  }
  parked_.fetch_sub(1, std::memory_order_seq_cst);
  return keep_going;
}

void pool_core::pass_wake_up_on(worker& w) noexcept {
  if (searching_.load(std::memory_order_seq_cst) == 0 && parked_.load(std::memory_order_seq_cst) > 0) wake_one(&w);
}

void pool_core::wake_one_if_needed(worker* waker) noexcept {
  // Both loads are of lines written only when workers change state, so they are usually cached.
  if (searching_.load(std::memory_order_seq_cst) == 0 && parked_.load(std::memory_order_seq_cst) > 0) wake_one(waker);
}

void pool_core::wake_one(worker* waker) noexcept {
  if (waker != nullptr) {
    waker->counters.wakeups.add();
  } else {
    external_wakeups_.fetch_add(1, std::memory_order_relaxed);
  }
  wake_epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_one(wake_epoch_);
}

}  // namespace tidepool::detail
