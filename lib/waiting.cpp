// Waiting: for one task (task<T>::wait / get / wait_for) and for a whole pool to drain
// (stop_and_wait). A worker never blocks in either: it runs other tasks of its pool until the
// condition holds, so waiting inside a task cannot deadlock the pool.

#include <chrono>  // for std::chrono::steady_clock
#include <mutex>   // for std::lock_guard
#include <thread>  // for std::this_thread::yield

#include "pool_core.hpp"
#include "tidepool/detail/cpu_pause.hpp"
#include "tidepool/detail/futex.hpp"
#include "tidepool/detail/pending_count.hpp"

namespace tidepool::detail {
namespace {

// Spinning before blocking: a task that finishes within ~a microsecond is picked up without a
// system call on either side. Tuned guess; blocking costs a futex wait and a futex wake (~5 µs).
constexpr int spins_before_blocking = 64;

bool finished(const task_node* node) noexcept { return node->outcome() != outcome_pending; }

// Marks the node as waited on, then sleeps until its state changes or the deadline passes.
// Returns false on timeout.
bool block_on(task_node* node, const std::chrono::steady_clock::time_point* deadline) {
  std::uint32_t state = node->state.load(std::memory_order_acquire);
  while ((state & outcome_mask) == outcome_pending) {
    if ((state & waiter_bit) == 0) {
      // The finishing worker exchanges the state; if it sees this bit it makes the wake call.
      if (!node->state.compare_exchange_weak(state, state | waiter_bit, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
        continue;
      }
      state |= waiter_bit;
    }
    if (deadline == nullptr) {
      futex_wait(node->state, state);
    } else {
      const auto now = std::chrono::steady_clock::now();
      if (now >= *deadline) return false;
      futex_wait_for(node->state, state, *deadline - now);
    }
    state = node->state.load(std::memory_order_acquire);
  }
  return true;
}

// Runs tasks of `w`'s pool until `done()`. When there is nothing to run, pauses, then calls
// `sleep_briefly(until)` (which returns early when what it waits for changes), so a long wait
// does not burn a core. It wakes up every 200 µs to look for work again, since new tasks do not
// wake a thread that waits here.
// Past the helping cap (worker::max_help_depth) it runs only its own fork-join work and, if it
// waits for one task (`awaited`), that task itself when nobody has started it: enough for any
// recursion to go on, one stack frame per level, as in serial code.
template <class Done, class Sleep>
bool help_until(worker& w, Done done, const std::chrono::steady_clock::time_point* deadline, Sleep sleep_briefly,
                task_node* awaited = nullptr) {
  struct depth_guard {
    std::size_t& depth;
    explicit depth_guard(std::size_t& d) : depth(++d) {}
    ~depth_guard() { --depth; }
  } nested(w.help_depth);
  const bool may_take_any = w.help_depth <= worker::max_help_depth;
  int idle_rounds = 0;
  while (!done()) {
    if (task_node* t = may_take_any ? w.core.find_task(w) : w.deque.pop()) {
      w.core.execute(w, t, /*holds_slot=*/true);
      idle_rounds = 0;
      continue;
    }
    if (!may_take_any && awaited != nullptr && w.core.run_if_unstarted(w, awaited)) continue;
    if (deadline != nullptr && std::chrono::steady_clock::now() >= *deadline) return false;
    if (++idle_rounds < spins_before_blocking) {
      cpu_pause();
    } else {
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      if (deadline != nullptr && *deadline < until) until = *deadline;
      sleep_briefly(until);
    }
  }
  return true;
}

auto sleep_on_task(task_node* node) {
  return [node](std::chrono::steady_clock::time_point until) { block_on(node, &until); };
}

void yield_until(std::chrono::steady_clock::time_point) { std::this_thread::yield(); }

}  // namespace

void wait_for_task(task_node* node) {
  if (finished(node)) return;
  if (worker* w = current_worker()) {
    help_until(*w, [node] { return finished(node); }, nullptr, sleep_on_task(node), node);
    return;
  }
  for (int i = 0; i < spins_before_blocking; ++i) {
    if (finished(node)) return;
    cpu_pause();
  }
  block_on(node, nullptr);
}

bool wait_for_task_for(task_node* node, std::chrono::nanoseconds timeout) {
  if (finished(node)) return true;
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  // Saturate: wait_for(nanoseconds::max()) means "forever", not an overflowed past deadline.
  const auto deadline = timeout >= clock::time_point::max() - now ? clock::time_point::max() : now + timeout;
  if (worker* w = current_worker()) {
    return help_until(*w, [node] { return finished(node); }, &deadline, sleep_on_task(node), node);
  }
  return block_on(node, &deadline);
}

void wait_until_done(pending_count& pending) {
  if (!pending.done()) {
    if (worker* w = current_worker()) {
      help_until(
          *w, [&pending] { return pending.done(); }, nullptr,
          [&pending](std::chrono::steady_clock::time_point until) {
            const std::chrono::nanoseconds limit = until - std::chrono::steady_clock::now();
            pending.block_until_done(&limit);
          });
    } else {
      for (int i = 0; i < spins_before_blocking && !pending.done(); ++i) cpu_pause();
      pending.block_until_done();
    }
  }
  // Whichever way done() was seen — a helping wait blocks in time-limited slices and may see
  // the count reach zero between two of them — and whatever an earlier round's wait left.
  pending.forget_waiters();
}

std::uint64_t pool_core::unfinished() const noexcept {
  // Finished first, submitted last: see pool_metrics for why this order keeps the result >= 0.
  std::uint64_t finished_count = 0;
  for (const auto& w : workers_) {
    finished_count += w->counters.succeeded.read() + w->counters.failed.read() + w->counters.cancelled.read() +
                      w->counters.expired.read();
  }
  finished_count += cancelled_by_handles_.load(std::memory_order_seq_cst);
  finished_count += succeeded_elsewhere_.load(std::memory_order_seq_cst) + failed_elsewhere_.load(std::memory_order_seq_cst);
  finished_count += timers_.cancelled();
  return submitted() - finished_count;
}

std::uint64_t pool_core::queued() const noexcept {
  std::uint64_t left_the_queue = 0;
  for (const auto& w : workers_) {
    left_the_queue += w->counters.started.read() + w->counters.cancelled.read() + w->counters.expired.read();
  }
  left_the_queue += cancelled_by_handles_.load(std::memory_order_seq_cst);
  left_the_queue += timers_.cancelled();
  return submitted() - left_the_queue;
}

std::uint64_t pool_core::submitted() const noexcept {
  std::uint64_t count = external_.accepted();
  for (const auto& w : workers_) count += w->counters.submitted.read();
  return count;
}

void pool_core::notify_drain() noexcept {
  drain_epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(drain_epoch_);
}

void pool_core::stop_and_wait() {
  stop();
  // In a child process after fork() no worker exists to finish anything: nothing to wait for.
  if (forked_away()) return;
  // Pairs with the fence in park(): either the last worker to go idle sees stopping_ and
  // notifies us, or we see its final counts below.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (worker* w = worker_of_this_thread()) {
    // Called from one of our own tasks. Waiting for every task to finish could wait for
    // ourselves, or for a task on another worker that waits for us, or that does the same
    // thing: so from inside, we help until nothing is left in any queue, and return. Tasks
    // still running on other workers may still be running (pool.hpp says so).
    help_until(*w, [&] { return queued() == 0; }, nullptr, yield_until);
    return;
  }
  for (;;) {
    const std::uint32_t epoch = drain_epoch_.load(std::memory_order_seq_cst);
    if (unfinished() == 0) return;
    futex_wait(drain_epoch_, epoch);
  }
}

void pool_core::shutdown() {
  stop_and_wait();
  if (forked_away()) {
    // The workers (and any thread that was inside submit()) exist only in the parent; the locks
    // they might have held stay held here. Touch neither: forget the threads, leave the rest.
    // The core is never freed here (the workers' references to it are never released).
    for (auto& w : workers_) w->thread.forget();
    timers_.forget();
    return;
  }
  timers_.join();  // stop() closed the timer queue: its thread is on its way out
  // Submitters that are still finishing their call (or being refused) must be out before the
  // core may be destroyed. Their remaining work is a few hundred nanoseconds.
  while (external_.anyone_inside()) std::this_thread::yield();
  {
    // Under the resize lock: a task still running on another worker may be inside resize(),
    // starting threads we would otherwise not join.
    std::lock_guard lock(resize_mutex_);
    shutdown_.store(true, std::memory_order_seq_cst);
  }
  wake_all_sleepers();
  worker* self = worker_of_this_thread();
  for (auto& w : workers_) {
    if (w.get() == self) {
      w->thread.detach();  // cannot join ourselves; this thread exits once its task returns
    } else if (w->thread.joinable()) {
      w->thread.join();
    }
  }
}

}  // namespace tidepool::detail
