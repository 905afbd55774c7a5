// What an idle worker does, and who wakes it.
//
// A worker that finds no task becomes a *searcher*: it keeps looking for a bounded time that
// adapts to how soon work has been arriving (see adaptive_search_ns), because work often arrives
// within microseconds. Then it parks: it sleeps on a futex word of its own until another thread
// wakes it. At most half the workers (at least two) start a search of their own accord, so an
// idle pool does not have every core spinning (the rule of Go's and Tokio's schedulers; this file
// follows Tokio's design); a worker woken for work, or kept up by work it saw, searches anyway.
//
// State: searching_ counts searchers; unparked_ counts workers not on the sleepers list. Both
// are written only when a worker changes state, and read by every submission, so their line is
// almost always shared, never bounced. The sleepers list is guarded by idle_mutex_, which is
// taken only on those transitions too.
//
// Who wakes whom:
//   * A submission wakes a sleeper only if nobody is searching (a searcher will find the task)
//     and somebody sleeps. The waker pops one sleeper and counts it as a searcher *before*
//     waking it, so the next submissions see a searcher and make no wake-up call of their own:
//     a burst of submissions from a worker costs one futex wake, not one per task. A thread
//     outside the pool also wakes one while every searcher is still in transit (woken, not yet
//     running): its burst costs one wake-up per task until a woken worker runs, or until all
//     are up (detail/parking_handshake.hpp, waker_kind, has why and the measurements).
//   * A searcher that finds a task stops searching; if it was the last searcher and more work
//     is in sight, it wakes one more sleeper: nobody else is looking.
//     A woken worker is a searcher, so the chain continues as long as work is found. So is a
//     worker whose last look before sleeping saw work and kept it up: the submitters of that
//     work may have counted on it as a searcher and woken nobody (parking_handshake.hpp).
//
// No lost wake-ups. A parking worker leaves unparked_ (a seq_cst read-modify-write) and then
// looks at every queue once more; a submitter publishes its task (a seq_cst read-modify-write
// for the global queue, a store plus a seq_cst fence for a deque or an inbox) and then reads
// searching_ and unparked_. Each side orders its write before its read, so at least one sees the
// other: either the worker finds the task and takes itself off the sleepers list, or the
// submitter sees a sleeper and wakes it. A searcher that gives up does the same in park(), after
// it stopped counting as a searcher, which covers submitters that saw it searching and woke
// nobody.
//
// Those decisions — the counters, the sleepers list under idle_mutex_, the submitter's "wake
// someone?", the last searcher's baton, the park side's announce / look again / sleep or stay —
// are detail/parking_handshake.hpp, the code that test/relacy/models.cpp model-checks
// (parking_no_lost_wakeup, parking_deque_publish: tasks published into the real segmented queue
// and a real deque, workers that search, park and wake through it; the futex sleep is modelled
// there by a semaphore). This file adds what is the pool's own: how long to search, the futex,
// and what else keeps a worker awake (stopping, shutdown, retirement).

#include <sched.h>  // for sched_yield

#include <algorithm>  // for std::clamp, std::max, std::min

#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/cpu_pause.hpp"
#include "tidepool/detail/futex.hpp"

namespace tidepool::detail {
namespace {

// How long a searcher looks before parking adapts to how soon work has been arriving: a worker
// keeps an average of its recent idle gaps (from running out of work to finding some) and, if
// that average is at most long_gap, searches for four times it, between min_search and
// max_search; otherwise — the pool has been idle, or work arrives too rarely for spinning to
// catch it — for min_search only. So at a steady trickle of tasks (a server at half load) an
// idle worker is usually still looking when the next task arrives and starts it within a
// microsecond instead of a futex wake-up (5–50 µs on a virtual machine); after a burst (more than
// burst_tasks tasks without running out of work: its end says nothing about when the next task
// comes, whatever the gaps before it) and in an idle pool, a worker parks after min_search.
// min_search bounds the CPU an idle pool uses after a burst (≤ workers × 8 µs); long_gap and
// max_search what a lightly loaded one burns.
//
// Measured with bench_server's latency workload (2 workers, 50 µs tasks at Poisson times) at
// three loads, against oneTBB in the same sitting; p50 submit→start µs and CPUs used:
//   - half load (a task every 50 µs): 8.0–9.2 against oneTBB's 7.8–8.3 (twice the average gap,
//     no yields: 10.0–11.9); 1.87 CPUs against 1.85 (1.82);
//   - a task every 200 µs (latency_light): 10.3–10.8 against 13–14; 0.57 CPUs against 1.00;
//   - a task every 1 ms: 10 against 17; 0.09 CPUs against 0.30 (unchanged: the gaps are long).
// A max_search of 400 µs gave the same p50s and burned more (1.93 and 0.67 CPUs); searching
// longer at the lighter loads (long_gap = max_search = 400 µs) halved their p50 but burned
// more CPU than oneTBB (0.40 CPUs for a task every 1 ms); searching longer without yields made
// the half-load tail worse (p90 108–377 µs against 58), the spinning searchers taking the CPU
// from the producer.
constexpr std::uint64_t min_search_ns = 8'000;
constexpr std::uint64_t max_search_ns = 200'000;
constexpr std::uint64_t long_gap_ns = 200'000;
constexpr std::uint64_t search_gaps = 4;
static_assert(worker::longest_counted_idle_gap_ns > long_gap_ns, "a long gap must mean: search briefly");
static_assert(long_gap_ns <= max_search_ns, "searching for less than the gap rarely catches the next task");
constexpr int pauses_per_round = 16;
// Every round looks at the deques and inboxes; only every second (every 0.8 µs here, a pause
// being 25 ns) at the global queues too. A searcher that polls the queue a producer is filling
// pulls the queue's tail line away from that producer at every look, and a worker that keeps up
// with its producer searches between most tasks: looking every round cost 12 % of one worker
// and one producer's submissions (15.7 M tasks/s against 13.8, medians of 30 runs). Every
// second round (with the yields below) cost nothing measurable: 15.4 and 14.4 M/s against 15.6
// and 14.1 every fourth round, in two sittings of 12 runs each, alternated. The rounds in between must
// stay as long as a full look, though: a steal attempt alone, or a full look every 64 pauses,
// made fib and skynet at 2 workers 4-6 % slower.
constexpr int rounds_per_global_look = 2;
// A searcher yields its CPU every yield_rounds rounds without a find. The thread it is spinning
// beside is often the one about to submit the task it waits for: a producer woken on this CPU,
// whose submission otherwise waits for the kernel to preempt us. At half load, four tasks in
// ten started on the CPU their producer had just run on, and without yields those waited 15 µs
// (median) against oneTBB's 8.5, whose idle workers yield too; overall p90 77–101 µs against
// oneTBB's 58. Yielding every 1–8 rounds gave p90 58–62. When nothing else wants the CPU, a yield
// is a system call that returns at once, and the search still ends on time (it is bounded by
// the clock). With another process busy on one CPU, it did not make the latency worse (p50
// 1.3–3.7 ms against 1.7–3.9 without, 10,000 samples a run: the machine is close to saturated
// then, and every pool's latency is in milliseconds).
constexpr int yield_rounds = 4;
constexpr std::uint32_t burst_tasks = 16;

std::uint64_t adaptive_search_ns(const worker& w) noexcept {
  const std::uint64_t gap = w.recent_idle_gap_ns;
  if (gap > long_gap_ns) return min_search_ns;
  return std::clamp<std::uint64_t>(search_gaps * gap, min_search_ns, max_search_ns);
}

// At most this many searchers: two even in a small pool, so that one searcher descheduled by
// the operating system does not leave arrivals to wait for it (nobody wakes a sleeper while
// someone searches); half the workers in a larger one (the rule of Go's and Tokio's schedulers).
std::uint32_t max_searchers(std::uint32_t running) noexcept { return std::max<std::uint32_t>(2, running / 2); }

}  // namespace

bool pool_core::try_become_searching(worker& w) noexcept {
  return handshake().try_start_searching(
      w, [this] { return max_searchers(running_workers_.load(std::memory_order_relaxed)); });
}

void pool_core::stop_searching(worker& w) noexcept {
  if (w.idle_since_ns != 0) {
    // Found work after an idle gap: fold it into the average that sizes the next search.
    // Clamped, so that one long idle period is forgotten after a few short gaps.
    const std::uint64_t gap = std::min(steady_nanoseconds() - w.idle_since_ns, worker::longest_counted_idle_gap_ns);
    w.recent_idle_gap_ns = (3 * w.recent_idle_gap_ns + gap) / 4;
    w.idle_since_ns = 0;
  }
  // The last searcher to find work passes the baton if more work is in sight. Not blindly: on a
  // lightly loaded pool, where each task finds everyone asleep, waking a second worker for
  // nothing put a futex wake (and a lock) between the task and its start, and woke a worker only
  // to spin and park again.
  if (handshake().stop_searching(w, [this] { return work_visible(); })) notify_one(&w);
}

task_node* pool_core::search(worker& w) noexcept {
  const std::uint64_t now = steady_nanoseconds();
  if (w.idle_since_ns == 0) {  // just ran out of work
    w.idle_since_ns = now;
    w.search_budget_ns = w.tasks_since_idle > burst_tasks ? min_search_ns : adaptive_search_ns(w);
    w.tasks_since_idle = 0;
  }
  if (!try_become_searching(w)) return nullptr;
  const std::uint64_t until = now + w.search_budget_ns;
  int round = 0;
  do {
    for (int i = 0; i < pauses_per_round; ++i) cpu_pause();
    task_node* t = find_task(w, /*look_at_global=*/++round % rounds_per_global_look == 0);
    if (t != nullptr) {
      stop_searching(w);
      return t;
    }
    if (round % yield_rounds == 0) sched_yield();
  } while (steady_nanoseconds() < until);
  return nullptr;  // still counted as searching: park() ends that under the idle lock
}

bool pool_core::work_visible() noexcept {
  if (!global_.empty_estimate()) return true;
  for (const auto& other : workers_) {
    if (!other->deque.empty_estimate() || !other->inbox.empty_estimate()) return true;
  }
  return false;
}

bool pool_core::park(worker& w) noexcept {
  bool shutting_down = false;
  bool retiring = false;
  const bool sleep = handshake().park_or_stay(w, [&] {
    // After the handshake's fence, which pairs with stop_and_wait()'s too: our final counts
    // (written before) against its stopping_ flag.
    if (stopping_.load(std::memory_order_seq_cst)) notify_drain();
    shutting_down = shutdown_.load(std::memory_order_seq_cst);
    // A worker asked to retire must not sleep: resize() wakes sleepers only once, and may have
    // done so before we were on the list.
    retiring = w.state.load(std::memory_order_seq_cst) != worker_state::active;
    // Work arrived while we were announcing ourselves (or we are to exit).
    return work_visible() || shutting_down || retiring;
  });
  if (!sleep) {
    const bool keep_working = retiring || !(shutting_down && !work_visible());
    // Leaving for good: the handshake made us a searcher again, and nobody else should count on it.
    if (!keep_working) (void)handshake().stop_searching(w, [] { return false; });
    return keep_working;
  }

  w.counters.parks.add();
  // acquire: pairs with the waker's release, so what it set for us (searching) is visible.
  while (w.wake_word.load(std::memory_order_acquire) == 0) futex_wait(w.wake_word, 0);
  w.wake_word.store(0, std::memory_order_relaxed);
  test_hooks::at(test_hooks::point::after_wake_up);
  handshake().resumed();
  w.wake_latency.record(steady_nanoseconds() - w.woken_at_ns);
  return true;
}

namespace {
waker_kind kind_of(const worker* waker) noexcept { return waker == nullptr ? waker_kind::outside : waker_kind::worker; }
}  // namespace

void pool_core::wake_one_if_needed(worker* waker) noexcept {
  if (handshake().wake_needed([this] { return running_workers_.load(std::memory_order_relaxed); }, kind_of(waker))) {
    notify_one(waker);
  }
}

void pool_core::notify_one(worker* waker) noexcept {
  worker* sleeper = handshake().take_sleeper(kind_of(waker));
  if (sleeper == nullptr) return;
  if (waker != nullptr) {
    waker->counters.wakeups.add();
  } else {
    external_wakeups_.fetch_add(1, std::memory_order_relaxed);
  }
  wake(*sleeper);
}

void pool_core::wake(worker& sleeper) noexcept {
  // Read by the sleeper only once it sees the store below (acquire), and written by no one else:
  // the waker took it off the list (or empties the list under the lock: shutdown, a shrink, a
  // failed start).
  sleeper.woken_at_ns = steady_nanoseconds();
  sleeper.wake_word.store(1, std::memory_order_release);
  futex_wake_one(sleeper.wake_word);
}

void pool_core::wake_all_sleepers() noexcept {
  // Woken under the lock, and the list cleared in place: a worker that parks afterwards (park()
  // runs until shutdown is seen) never makes push_back allocate, which in a noexcept function
  // would end the process on bad_alloc.
  handshake().wake_all([](worker& sleeper) { wake(sleeper); });
}

}  // namespace tidepool::detail
