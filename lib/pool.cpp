// tidepool::pool: the public shell over pool_core, and the core's construction and metrics.

#include <limits.h>   // for PTHREAD_STACK_MIN
#include <pthread.h>  // for pthread_atfork
#include <sched.h>    // for sched_getaffinity, cpu_set_t, CPU_ISSET, CPU_SETSIZE

#include <cerrno>     // for errno

#include <algorithm>  // for std::max, std::min
#include <mutex>      // for std::lock_guard
#include <stdexcept>  // for std::invalid_argument
#include <string>     // for std::to_string
#include <system_error>  // for std::system_error, std::generic_category
#include <thread>     // for std::thread::hardware_concurrency, std::this_thread::yield
#include <vector>     // for std::vector

#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/futex.hpp"

namespace tidepool {
namespace detail {

#if defined(TIDEPOOL_TEST_HOOKS)
std::atomic<test_hooks::hook> test_hooks::installed{nullptr};
#endif

namespace {

// How many times this process's ancestry forked since the program started: bumped in the child
// of every fork(), by the handler registered below. A pool remembers the generation it was
// created in; in a child, the generations differ and the pool knows that its workers are gone.
// Relaxed loads: in the child, the handler ran on the very thread that forked, before fork()
// returned; threads created later see it through their creation. In the parent it never changes.
std::atomic<std::uint32_t> fork_generation{0};

void on_fork_in_child() noexcept { fork_generation.fetch_add(1, std::memory_order_relaxed); }

std::uint32_t current_fork_generation() {
  static const bool registered = [] {
    if (const int error = pthread_atfork(nullptr, nullptr, &on_fork_in_child); error != 0) {
      throw std::system_error(error, std::generic_category(), "tidepool: pthread_atfork");
    }
    return true;
  }();
  static_cast<void>(registered);
  return fork_generation.load(std::memory_order_relaxed);
}

std::size_t checked_stack_size(std::size_t requested) {
  if (requested != 0 && requested < static_cast<std::size_t>(PTHREAD_STACK_MIN)) {
    throw std::invalid_argument("tidepool::pool_options::stack_size: below the system's minimum (PTHREAD_STACK_MIN, " +
                                std::to_string(PTHREAD_STACK_MIN) + " bytes)");
  }
  return requested;
}

// Every CPU in `cpus` must be one this process may run on: pinning a worker elsewhere would fail
// on its thread, long after the constructor could have said why.
void check_cpus(const std::vector<int>& cpus) {
  if (cpus.empty()) return;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    throw std::system_error(errno, std::generic_category(), "tidepool::pool_options::cpus: sched_getaffinity");
  }
  for (const int cpu : cpus) {
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
      std::string usable;
      for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (!CPU_ISSET(c, &allowed)) continue;
        if (!usable.empty()) usable += ' ';
        usable += std::to_string(c);
      }
      throw std::invalid_argument("tidepool::pool_options::cpus: CPU " + std::to_string(cpu) +
                                  " is not one this process may run on (it may use: " + usable + ")");
    }
  }
}

std::size_t resolve_workers(std::size_t requested) {
  if (requested != 0) return requested;
  return std::max<std::size_t>(1, std::thread::hardware_concurrency());
}

std::size_t slot_limit(std::size_t workers, std::size_t queue_capacity) {
  if (queue_capacity == unbounded || queue_capacity > unbounded - workers) return unbounded;
  return workers + queue_capacity;
}

}  // namespace

void worker_main(std::shared_ptr<pool_core> core, worker* w);

pool_core::pool_core(pool_options options)
    : options_(std::move(options)),
      fork_generation_(current_fork_generation()),
      slot_limit_(slot_limit(resolve_workers(options_.workers), options_.queue_capacity)) {
  checked_stack_size(options_.stack_size);
  check_cpus(options_.cpus);
  const std::size_t n = resolve_workers(options_.workers);
  for (std::size_t i = 0; i < n; ++i) workers_.add(std::make_unique<worker>(*this, i));
  sleepers_.reserve(worker_slots::capacity);  // so that parking never allocates
  target_workers_.store(n, std::memory_order_relaxed);
}

pool_core::~pool_core() = default;

bool pool_core::forked_away() const noexcept {
  return fork_generation.load(std::memory_order_relaxed) != fork_generation_;
}

void pool_core::launch(worker& w) {
  running_workers_.fetch_add(1, std::memory_order_seq_cst);
  unparked_.fetch_add(1, std::memory_order_seq_cst);
  try {
    test_hooks::at(test_hooks::point::before_worker_thread_start);
    w.thread.start(options_.stack_size, [core = shared_from_this(), worker = &w]() mutable {
      worker_main(std::move(core), worker);
    });
  } catch (...) {
    running_workers_.fetch_sub(1, std::memory_order_seq_cst);
    unparked_.fetch_sub(1, std::memory_order_seq_cst);
    w.state.store(worker_state::exited, std::memory_order_release);
    throw;
  }
}

void pool_core::start() {
  // Registered here, not in the constructor: a token that has already fired calls cancel() at
  // once, which must find a fully built core.
  if (options_.stop_token.stop_possible()) stop_callback_.emplace(options_.stop_token, cancel_on_stop{this});
  try {
    for (const auto& w : workers_) launch(*w);
  } catch (...) {
    // Could not start every thread: end those that did start, then report the failure.
    shutdown_.store(true, std::memory_order_seq_cst);
    wake_all_sleepers();
    for (const auto& w : workers_) {
      if (w->thread.joinable()) w->thread.join();
    }
    throw;
  }
}

// Grow: first take back retirements that have not happened yet, then restart workers that
// left, then add new ones; all start at once. Shrink: ask the highest-numbered active workers to
// retire; each finishes the task it is running, hands its deque to the global queue and exits
// the next time it looks for work (sleeping ones are woken for that; one that finds a task after
// it was asked hands that task back too). No task is interrupted, and retired workers keep their
// counters, so metrics stay exact.
void pool_core::resize(std::size_t n) {
  if (n == 0) throw std::invalid_argument("tidepool::pool::resize: a pool needs at least one worker");
  if (n > worker_slots::capacity) throw std::invalid_argument("tidepool::pool::resize: at most 1024 workers");
  if (forked_away()) throw used_after_fork();
  std::lock_guard lock(resize_mutex_);
  // Under the lock: shutdown() sets shutdown_ (after stopping_) under it too, so a resize that
  // gets past this check finishes before shutdown joins the workers it may start.
  if (stopping_.load(std::memory_order_seq_cst)) throw pool_stopped();
  std::size_t active = target_workers_.load(std::memory_order_relaxed);
  // Whatever happens below, the pool's size and its queue limit are what actually runs.
  struct publish_on_exit {
    pool_core& core;
    const std::size_t& active;
    ~publish_on_exit() { core.publish_worker_count(active); }
  } publish{*this, active};
  if (n > active) {
    for (const auto& w : workers_) {
      if (active == n) break;
      worker_state expected = worker_state::retiring;
      if (w->state.compare_exchange_strong(expected, worker_state::active, std::memory_order_acq_rel)) ++active;
    }
    // A thread that cannot be created throws out of launch() (std::system_error): the workers
    // started until then stay, and publish_on_exit makes workers() say so.
    for (const auto& w : workers_) {
      if (active == n) break;
      worker_state state = w->state.load(std::memory_order_acquire);
      if (state != worker_state::leaving && state != worker_state::exited) continue;
      while (w->state.load(std::memory_order_acquire) != worker_state::exited) std::this_thread::yield();
      if (w->thread.joinable()) w->thread.join();
      w->state.store(worker_state::active, std::memory_order_release);
      launch(*w);
      ++active;
    }
    while (active < n) {
      worker& w = workers_.add(std::make_unique<worker>(*this, workers_.size()));
      launch(w);
      ++active;
    }
  } else if (n < active) {
    for (std::size_t i = workers_.size(); i-- > 0 && active > n;) {
      worker_state expected = worker_state::active;
      if (workers_[i]->state.compare_exchange_strong(expected, worker_state::retiring, std::memory_order_seq_cst)) {
        --active;
      }
    }
    // Sleeping workers cannot retire: wake them all (the ones that stay will sleep again).
    wake_all_sleepers();
  }
}

void pool_core::publish_worker_count(std::size_t active) noexcept {
  target_workers_.store(active, std::memory_order_release);
  slot_limit_.store(slot_limit(active, options_.queue_capacity), std::memory_order_release);
  // A grow may have made room for submitters blocked on a full queue.
  capacity_epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(capacity_epoch_);
}

pool_metrics pool_core::metrics() const {
  pool_metrics m;
  // Read in the reverse order of a task's life: finished, then started, then submitted. Each
  // later stage of a task is written after (and released after) its earlier stage, so whatever
  // we count as finished we also count as started and submitted: no gauge goes negative.
  std::uint64_t skipped_at_level[priority_levels]{};
  for (const auto& w : workers_) {
    m.succeeded += w->counters.succeeded.read();
    m.failed += w->counters.failed.read();
    m.cancelled += w->counters.cancelled.read();
    m.expired += w->counters.expired.read();
    for (unsigned level = 0; level < priority_levels; ++level) skipped_at_level[level] += w->counters.skipped_at_level[level].read();
  }
  m.cancelled += cancelled_by_handles_.load(std::memory_order_seq_cst);
  m.succeeded += succeeded_elsewhere_.load(std::memory_order_seq_cst);
  m.failed += failed_elsewhere_.load(std::memory_order_seq_cst);
  for (unsigned level = 0; level < priority_levels; ++level) {
    skipped_at_level[level] += cancelled_by_handles_at_level_[level].load(std::memory_order_relaxed);
  }
  m.cancelled += timers_.cancelled();  // delayed tasks that stop() cancelled before they were due
  std::uint64_t started = 0;
  for (const auto& w : workers_) {
    started += w->counters.started.read();
    for (unsigned level = 0; level < priority_levels; ++level) m.levels[level].started += w->counters.started_at_level[level].read();
  }
  // After started, before submitted: a delayed task leaves `scheduled` before it can start, and
  // enters it after it was counted submitted (timer_queue.hpp).
  m.scheduled = timers_.scheduled();
  const std::uint64_t not_pushed = timers_.outside_global_queue();  // counted in `external` before it
  const std::uint64_t external = external_.accepted();
  m.submitted = external;
  std::uint64_t submitted_at_level[priority_levels]{};
  for (const auto& w : workers_) {
    m.submitted += w->counters.submitted.read();
    for (unsigned level = 0; level < priority_levels; ++level) submitted_at_level[level] += w->counters.submitted_at_level[level].read();
  }
  for (unsigned level = 0; level < priority_levels; ++level) submitted_at_level[level] += external_.accepted_at_level(level);
  m.dropped = dropped_.load(std::memory_order_relaxed);
  m.running = started - m.succeeded - m.failed;
  m.waiting = m.submitted - started - m.cancelled - m.expired - m.scheduled;
  // Only the levels other than normal are counted per level: normal has what they leave. The
  // per-level counts are relaxed on the submitting side (submission.cpp), so a level's waiting
  // is clamped at zero rather than trusted to the same read order.
  m.levels[normal_level].started = started;
  m.levels[normal_level].waiting = m.waiting;
  for (unsigned level = 0; level < priority_levels; ++level) {
    if (level == normal_level) continue;
    const std::uint64_t left = m.levels[level].started + skipped_at_level[level];
    m.levels[level].waiting = submitted_at_level[level] > left ? submitted_at_level[level] - left : 0;
    m.levels[level].waiting = std::min(m.levels[level].waiting, m.levels[normal_level].waiting);
    m.levels[level].started = std::min(m.levels[level].started, m.levels[normal_level].started);
    m.levels[normal_level].waiting -= m.levels[level].waiting;
    m.levels[normal_level].started -= m.levels[level].started;
  }

  for (const auto& w : workers_) {
    const auto& c = w->counters;
    m.local_pushes += c.local_pushes.read();
    m.global_pushes += c.global_pushes.read();
    m.overflow_pushes += c.overflow_pushes.read();
    m.global_pops += c.global_pops.read();
    m.steal_attempts += c.steal_attempts.read();
    m.steals += c.steals.read();
    m.inline_runs += c.inline_runs.read();
    m.parks += c.parks.read();
    m.wakeups += c.wakeups.read();
  }
  m.wakeups += external_wakeups_.load(std::memory_order_relaxed);
  // What entered the global queue: external submissions to the pool itself, subpool runner jobs
  // sent from outside threads, what workers sent there (counted above) and hand-overs.
  m.global_pushes += external - external_.accepted_for_subpools() - not_pushed +
                     external_runner_pushes_.load(std::memory_order_relaxed) + m.overflow_pushes;

  for (const auto& w : workers_) {
    w->queue_wait.add_to(m.queue_wait);
    w->run_time.add_to(m.run_time);
    w->wake_latency.add_to(m.wake_latency);
    for (unsigned level = 0; level < priority_levels; ++level) w->queue_wait_at_level[level].add_to(m.levels[level].queue_wait);
  }
  m.latency_sample_every = options_.latency_sample_every;

  for (unsigned level = 0; level < priority_levels; ++level) {
    m.queue_segments += global_.level(level).segments_allocated();
    m.retired_segments += global_.level(level).unreclaimed_segments();
    m.retired_segments_bound += global_.level(level).unreclaimed_segments_bound();
  }
  return m;
}

}  // namespace detail

detail::pool_core& detail::pool_access::core(pool& p) noexcept { return *p.core_; }

namespace {
// Before stopping: outstanding tracked Asio work (tidepool/asio.hpp; a co_spawn'ed coroutine holds
// some while it lives) is work whose handlers the pool has promised to accept. A worker cannot
// wait for it (it may be what the work waits for), nor a forked child (whose workers are gone).
void wait_for_tracked_asio_work(detail::asio_attachment* asio, detail::pool_core& core) noexcept {
  if (asio != nullptr && core.worker_of_this_thread() == nullptr && !core.forked_away()) {
    asio->wait_until_no_tracked_work();
  }
}
}  // namespace

pool::pool(pool_options options) : core_(std::make_shared<detail::pool_core>(std::move(options))) { core_->start(); }

pool::~pool() {
  detail::asio_attachment* asio = asio_.load(std::memory_order_acquire);
  wait_for_tracked_asio_work(asio, *core_);
  core_->shutdown();
  delete asio;  // after the workers: a handler still running may use its services
}

detail::submit_status pool::submit_node(detail::task_node* node, bool may_block) {
  return core_->submit(node, may_block);
}

void detail::throw_if_refused(submit_status status) {
  switch (status) {
    case submit_status::accepted:
      return;
    case submit_status::stopped:
      throw pool_stopped();
    case submit_status::full:
      throw queue_full();
    case submit_status::forked:
      throw used_after_fork();
  }
}

void pool::stop() { core_->stop(); }
void pool::stop_and_wait() {
  wait_for_tracked_asio_work(asio_.load(std::memory_order_acquire), *core_);
  core_->stop_and_wait();
}
bool pool::stopped() const noexcept { return core_->stopping(); }
pool_metrics pool::metrics() const { return core_->metrics(); }
std::size_t pool::workers() const noexcept { return core_->worker_count(); }
void pool::resize(std::size_t workers) { core_->resize(workers); }

}  // namespace tidepool
