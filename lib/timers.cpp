// Delayed and periodic tasks: the pool's timer queue (see timer_queue.hpp), and how the pool and
// its subpools accept timers and take in due tasks.

#include <sys/prctl.h>  // for prctl, PR_SET_TIMERSLACK

#include <algorithm>  // for std::push_heap, std::pop_heap, std::make_heap, std::partition, std::max, std::find_if
#include <cstddef>    // for std::size_t
#include <new>        // for std::bad_alloc
#include <utility>    // for std::exchange

#include "outcome.hpp"
#include "pool_core.hpp"
#include "subpool_core.hpp"
#include "tidepool/detail/timer_submitter.hpp"
#include "tidepool/subpool.hpp"

namespace tidepool::detail {
namespace {

// A full bounded queue refused the earliest due task: try again this much later.
constexpr std::chrono::milliseconds full_queue_retry{1};
// The longest single sleep: far-off (or never-due, saturated) times are reached in steps, which
// keeps the timeout within every clock conversion's range.
constexpr std::chrono::hours longest_sleep{1};

// The callable of one run of a periodic timer: calls the timer's callable and, when destroyed
// (after its run, or unrun if the run is refused or cancelled), ends the run.
class periodic_run {
 public:
  explicit periodic_run(periodic_state* state) noexcept : state_(state) { state_->add_ref(); }
  periodic_run(periodic_run&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  periodic_run(const periodic_run&) = delete;
  periodic_run& operator=(const periodic_run&) = delete;
  periodic_run& operator=(periodic_run&&) = delete;
  ~periodic_run() {
    if (state_ == nullptr) return;
    state_->end_run();
    state_->release();
  }
  void operator()() { state_->invoke(); }

 private:
  periodic_state* state_;
};

// The next tick strictly after `now`, on the schedule first + k * period (late ticks are skipped,
// not bunched), saturated at the end of time.
std::chrono::steady_clock::time_point next_tick(std::chrono::steady_clock::time_point due, std::chrono::nanoseconds period,
                                                std::chrono::steady_clock::time_point now) noexcept {
  using clock = std::chrono::steady_clock;
  const auto missed = due <= now ? (now - due) / period + 1 : 1;
  if (period > (clock::time_point::max() - due) / missed) return clock::time_point::max();
  return due + missed * period;
}

// go_every's admission, the same for a pool and a subpool: the state is ended (its callable
// destroyed) unless the timer queue took it.
submit_status start_periodic_on(timer_queue& timers, periodic_state* state, std::chrono::nanoseconds period,
                                subpool_core* sub, submit_status refusal) {
  if (refusal == submit_status::accepted) {
    bool added = false;
    try {
      added = timers.add_periodic(period, state, sub);
    } catch (...) {
      state->cancel();
      throw;
    }
    if (added) return submit_status::accepted;
    refusal = submit_status::stopped;
  }
  state->cancel();
  return refusal;
}

}  // namespace

// ---- The timer queue ------------------------------------------------------------------------

timer_queue::~timer_queue() {
  if (thread_ != nullptr) {
    close_and_cancel_all();
    join();
  }
}

bool timer_queue::add_delayed(clock::time_point due, task_node* node, subpool_core* sub) {
  node->state.fetch_or(delayed_bit, std::memory_order_relaxed);  // ours still; published by the lock
  auto e = std::make_unique<entry>(entry{due, 0, node, nullptr, std::chrono::nanoseconds::zero(), sub});
  return add(std::move(e));
}

bool timer_queue::add_periodic(std::chrono::nanoseconds period, periodic_state* state, subpool_core* sub) {
  auto e = std::make_unique<entry>(entry{due_after(period), 0, nullptr, state, period, sub});
  return add(std::move(e));
}

bool timer_queue::add(std::unique_ptr<entry> e) {
  std::lock_guard lock(mutex_);
  if (closed_ || (e->sub != nullptr && e->sub->stopping())) return false;
  if (thread_ == nullptr) thread_ = std::make_unique<std::thread>([this] { run(); });
  // The only step that may fail (std::bad_alloc), before anything changed. One spare place: the
  // timer thread puts back an entry it took out without allocating (run()).
  if (heap_.capacity() < heap_.size() + 2) heap_.reserve(std::max<std::size_t>(16, 2 * heap_.capacity()));
  e->order = next_order_++;
  // Counted before the timer thread can see it (it takes the lock first), so it is `scheduled`
  // before it can leave `scheduled`.
  if (e->node != nullptr) scheduled_.fetch_add(1, std::memory_order_seq_cst);
  if (e->node != nullptr && e->sub == nullptr) outside_global_queue_.fetch_add(1, std::memory_order_release);
  if (e->periodic != nullptr) e->periodic->add_ref();
  const bool earliest = heap_.empty() || later_first{}(heap_.front(), e.get());
  heap_.push_back(e.release());
  std::push_heap(heap_.begin(), heap_.end(), later_first{});
  // Under the lock: the queue (the pool) may be gone once we let go of it, if the task destroys it.
  if (earliest) wake_.notify_one();
  return true;
}

void timer_queue::run() noexcept {
  // The kernel may otherwise delay a timed wake-up by up to 50 µs to batch it with others.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  std::unique_lock lock(mutex_);
  while (!closed_) {
    if (heap_.empty()) {
      wake_.wait(lock);
      continue;
    }
    entry* e = heap_.front();
    const clock::time_point now = clock::now();
    const clock::time_point at = std::max(e->due, retry_at_);
    if (at > now) {
      wake_.wait_until(lock, at - now > longest_sleep ? now + longest_sleep : at);
      continue;
    }
    std::pop_heap(heap_.begin(), heap_.end(), later_first{});
    heap_.pop_back();
    firing_ = true;
    // Taken under the lock, before a stopping subpool's sweep could miss this entry and let the
    // subpool go: see timer_queue.hpp.
    subpool_core* const sub = e->sub;
    if (sub != nullptr) sub->hold();
    lock.unlock();
    const fired outcome = fire(*e);
    lock.lock();
    bool cancel_it = false;
    if (outcome == fired::done) {
      retry_at_ = {};
    } else if (closed_ || (e->periodic != nullptr && sub != nullptr && sub->stopping())) {
      cancel_it = true;  // the pool stopped (or the subpool of a periodic timer) meanwhile
    } else {
      // Cannot fail: add() keeps a spare place beyond every entry, ours included.
      heap_.push_back(e);
      std::push_heap(heap_.begin(), heap_.end(), later_first{});
      retry_at_ = outcome == fired::full ? now + full_queue_retry : clock::time_point{};
      e = nullptr;
    }
    lock.unlock();
    if (cancel_it) {
      cancel(e);
    } else if (e != nullptr) {
      delete e;
    }
    if (sub != nullptr) sub->let_go();  // may free an orphaned subpool: our last touch of it
    lock.lock();
    firing_ = false;
    fired_.notify_all();
  }
}

void timer_queue::wait_while_firing(std::unique_lock<std::mutex>& lock) noexcept {
  if (thread_ == nullptr || thread_->get_id() == std::this_thread::get_id()) return;  // (not on itself)
  fired_.wait(lock, [this] { return !firing_; });
}

timer_queue::fired timer_queue::fire(entry& e) noexcept {
  if (e.node != nullptr) {
    const bool queued = e.sub != nullptr ? e.sub->enqueue_due(e.node) : core_.enqueue_due(e.node);
    return queued ? fired::done : fired::full;
  }
  switch (e.periodic->begin_run()) {
    case periodic_state::tick::ended:
      e.periodic->release();
      return fired::done;
    case periodic_state::tick::skip:
      break;
    case periodic_state::tick::run:
      submit_tick(e);
      break;
  }
  e.due = next_tick(e.due, e.period, clock::now());
  return fired::again;
}

void timer_queue::submit_tick(entry& e) noexcept {
  try {
    task_node* run = make_task_node<periodic_run, void>(periodic_run(e.periodic), task_kind::fire_and_forget);
    // Like go(), but never blocking: a refusal destroys the run (ending it) and counts it dropped.
    static_cast<void>(e.sub != nullptr ? e.sub->submit(run, /*may_block=*/false) : core_.submit(run, /*may_block=*/false));
  } catch (...) {  // std::bad_alloc: this tick is skipped; the run's destructor ended it
  }
}

void timer_queue::cancel(entry* e) noexcept {
  if (task_node* node = e->node) {
    // Out of `scheduled` first, then destroyed, counted cancelled, then told: the order a worker
    // follows for a skipped task, so no snapshot sees it in two states or in none.
    if (e->sub != nullptr) e->sub->leave_scheduled();
    leave_scheduled();
    node->ops(node, task_op::cancel);
    if (e->sub != nullptr) e->sub->count_cancelled_delayed();
    cancelled_.fetch_add(1, std::memory_order_release);
    if (node->kind == task_kind::with_handle) publish_outcome(node, outcome_cancelled);
    release_task_node(node);
    if (e->sub != nullptr) e->sub->task_released();  // the task's unit: the subpool may go now
    core_.notify_drain();
  } else {
    e->periodic->cancel();
    e->periodic->release();
  }
  delete e;
}

timer_queue::delayed_cancel timer_queue::cancel_delayed(task_node* node) noexcept {
  entry* found = nullptr;
  {
    std::unique_lock lock(mutex_);
    wait_while_firing(lock);
    // After the firing: the bit is clear only if the task entered a queue.
    if ((node->state.load(std::memory_order_acquire) & delayed_bit) == 0) return delayed_cancel::queued;
    const auto it = std::find_if(heap_.begin(), heap_.end(), [node](const entry* e) { return e->node == node; });
    if (it == heap_.end()) return delayed_cancel::gone;  // a stop's sweep took it out first
    found = *it;
    heap_.erase(it);
    std::make_heap(heap_.begin(), heap_.end(), later_first{});
  }
  cancel(found);
  return delayed_cancel::cancelled;
}

void timer_queue::close_and_cancel_all() noexcept {
  std::vector<entry*> doomed;
  {
    std::unique_lock lock(mutex_);
    closed_ = true;
    doomed.swap(heap_);  // no allocation
    wake_.notify_all();
    // An entry the thread is firing now is cancelled (or queued, if due) before we return: after
    // stop(), no periodic run is submitted and no delayed task is left pending.
    wait_while_firing(lock);
  }
  for (entry* e : doomed) cancel(e);
}

void timer_queue::cancel_stopping_subpools() noexcept {
  entry* doomed = nullptr;
  {
    std::unique_lock lock(mutex_);
    wait_while_firing(lock);  // as in close_and_cancel_all; the entry may be one of ours
    const auto stopping = std::partition(heap_.begin(), heap_.end(),
                                         [](const entry* e) { return e->sub == nullptr || !e->sub->stopping(); });
    for (auto it = stopping; it != heap_.end(); ++it) {
      (*it)->next_doomed = doomed;
      doomed = *it;
    }
    heap_.erase(stopping, heap_.end());
    std::make_heap(heap_.begin(), heap_.end(), later_first{});
  }
  while (doomed != nullptr) cancel(std::exchange(doomed, doomed->next_doomed));
}

void timer_queue::join() noexcept {
  std::unique_ptr<std::thread> thread;
  {
    std::lock_guard lock(mutex_);
    thread = std::move(thread_);
  }
  if (thread == nullptr || !thread->joinable()) return;
  if (thread->get_id() == std::this_thread::get_id()) {
    thread->detach();  // a cancelled callable's destructor destroyed the pool: we exit after it
  } else {
    thread->join();
  }
}

void timer_queue::forget() noexcept { static_cast<void>(thread_.release()); }

// ---- The pool ---------------------------------------------------------------------------------

submit_status pool_core::submit_at(task_node* node, std::chrono::steady_clock::time_point when) {
  if (forked_away()) {
    refuse(node);
    return submit_status::forked;
  }
  // As in submit(): announced, because the task may destroy the pool before we return.
  external_submissions::shard& mine = external_.of_this_thread();
  mine.inside.fetch_add(1, std::memory_order_seq_cst);
  const auto leave = [&mine] { mine.inside.fetch_sub(1, std::memory_order_release); };
  const auto take_back = [&] {
    mine.accepted.fetch_sub(1, std::memory_order_seq_cst);
    notify_drain();
    count_dropped();
  };
  submit_status status = submit_status::stopped;
  if (!stopping_.load(std::memory_order_seq_cst)) {
    // Counted first, then stopping checked (both seq_cst), as in submit_external; then the timer
    // queue refuses it if the stop has closed it since.
    mine.accepted.fetch_add(1, std::memory_order_seq_cst);
    if (node->owner == nullptr) node->owner = &direct_tasks_;
    bool added = false;
    try {
      added = !stopping_.load(std::memory_order_seq_cst) && timers_.add_delayed(when, node, nullptr);
    } catch (...) {
      take_back();
      leave();
      discard_task_node(node);
      throw;
    }
    if (added) {
      status = submit_status::accepted;
    } else {
      take_back();
    }
  } else {
    count_dropped();
  }
  leave();
  if (status != submit_status::accepted) discard_task_node(node);  // after our last touch, as in submit()
  return status;
}

submit_status pool_core::start_periodic(periodic_state* state, std::chrono::nanoseconds period) {
  const submit_status refusal = forked_away() ? submit_status::forked
                                : stopping()  ? submit_status::stopped
                                              : submit_status::accepted;
  return start_periodic_on(timers_, state, period, nullptr, refusal);
}

bool pool_core::enqueue_due(task_node* node) noexcept {
  if (admit(nullptr, /*may_block=*/false) != admission::admitted) return false;  // full: retried
  // Both before any worker can see it: once it has run, a snapshot must count it neither as
  // scheduled nor as outside the global queue.
  timers_.leave_scheduled();
  timers_.entering_global_queue();
  count_due_at_level(node->priority());
  sample_submit_time(node);  // its queue wait starts now
  timer_queue::leaving_delayed(node);
  try {
    schedule(nullptr, node);
  } catch (...) {  // std::bad_alloc, for a new queue segment: retried like a full queue
    if (timer_queue::taken_while_leaving(node)) {
      // A canceller or a waiter took it over as a queued task (and its slot): it never enters
      // the global queue, and we drop the reference the queue would have had.
      timers_.not_entering_global_queue();
      release_task_node(node);
      return true;
    }
    timers_.return_to_scheduled();
    count_due_at_level(node->priority(), /*add=*/false);
    timers_.not_entering_global_queue();
    release_slot();
    return false;
  }
  return true;
}

// ---- Subpools -------------------------------------------------------------------------------

submit_status subpool_core::submit_at(task_node* node, std::chrono::steady_clock::time_point when) {
  if (root_.forked_away()) {
    refuse(node);
    return submit_status::forked;
  }
  worker* self = root_.worker_of_this_thread();
  if (priority_ && (node->flags & flag_priority_given) == 0) node->set_priority(*priority_);
  // Counted at no level yet: a delayed task enters its level's counts when it is due (enqueue_due).
  if (stopping() || !root_.count_accepted(self, priority::normal)) {
    refuse(node);
    return submit_status::stopped;
  }
  for (subpool_core* s = this; s != nullptr; s = s->parent_) {
    s->counters_.submitted.fetch_add(1, std::memory_order_release);
    s->counters_.scheduled.fetch_add(1, std::memory_order_seq_cst);
  }
  if (node->owner == nullptr) node->owner = this;
  pending_.add();  // the task's unit, until it ends or is cancelled
  const auto take_back = [&] {
    for (subpool_core* s = this; s != nullptr; s = s->parent_) {
      s->counters_.scheduled.fetch_sub(1, std::memory_order_seq_cst);
      s->counters_.submitted.fetch_sub(1, std::memory_order_release);
    }
    root_.uncount_accepted(self, priority::normal);
    count_dropped();
    finish_pending();         // the last touch
    discard_task_node(node);  // only now: its captures may own the subpool
  };
  // The timer queue refuses it if this subpool (or an ancestor) is stopping: our stop() sets the
  // flag and then sweeps the queue under its lock, so the task is either swept or refused.
  bool added = false;
  try {
    added = root_.timers().add_delayed(when, node, this);
  } catch (...) {
    take_back();
    throw;
  }
  if (!added) {
    take_back();
    return submit_status::stopped;
  }
  return submit_status::accepted;
}

submit_status subpool_core::start_periodic(periodic_state* state, std::chrono::nanoseconds period) {
  const submit_status refusal = root_.forked_away() ? submit_status::forked
                                : stopping()        ? submit_status::stopped
                                                    : submit_status::accepted;
  return start_periodic_on(root_.timers(), state, period, this, refusal);
}

bool subpool_core::enqueue_due(task_node* node) noexcept {
  submit_status refusal = submit_status::accepted;
  // As a worker's submission (from_worker): never blocks; full → retried later.
  if (!admit(/*from_worker=*/true, /*may_block=*/false, refusal)) return false;
  pending_.add();  // ours: once queued, the task may run and the subpool go before our last touch
  leave_scheduled();
  root_.timers().leave_scheduled();
  root_.count_due_at_level(node->priority());
  root_.sample_submit_time(node);
  bool took_slot = false;
  timer_queue::leaving_delayed(node);
  try {
    took_slot = runners_.publish_then_try_take([&] { queue_.enqueue(node); });  // seq_cst: runner_slots.hpp
  } catch (...) {  // std::bad_alloc, for a new segment: retried like a full queue
    if (timer_queue::taken_while_leaving(node)) {
      // A canceller took it over as a queued task (task_skipped gave its slot back).
      release_task_node(node);
      finish_pending();
      return true;
    }
    for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.scheduled.fetch_add(1, std::memory_order_seq_cst);
    root_.timers().return_to_scheduled();
    root_.count_due_at_level(node->priority(), /*add=*/false);
    release_slot();
    finish_pending();
    return false;
  }
  if (took_slot) send_runner();
  finish_pending();  // our unit: the last touch
  return true;
}

void subpool_core::leave_scheduled() noexcept {
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.scheduled.fetch_sub(1, std::memory_order_seq_cst);
}

void subpool_core::count_cancelled_delayed() noexcept {
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.cancelled.fetch_add(1, std::memory_order_release);
}

}  // namespace tidepool::detail

namespace tidepool {

detail::submit_status pool::submit_node_at(detail::task_node* node, std::chrono::steady_clock::time_point when) {
  return core_->submit_at(node, when);
}
detail::submit_status pool::start_periodic(detail::periodic_state* state, std::chrono::nanoseconds period) {
  return core_->start_periodic(state, period);
}
detail::submit_status subpool::submit_node_at(detail::task_node* node, std::chrono::steady_clock::time_point when) {
  return core_->submit_at(node, when);
}
detail::submit_status subpool::start_periodic(detail::periodic_state* state, std::chrono::nanoseconds period) {
  return core_->start_periodic(state, period);
}

}  // namespace tidepool
