// tidepool::subpool and its core. See subpool_core.hpp for the design.

#include <algorithm>  // for std::find
#include <mutex>      // for std::lock_guard
#include <stdexcept>  // for std::invalid_argument
#include <string>     // for std::to_string

#include "subpool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/futex.hpp"

namespace tidepool {
namespace detail {
namespace {

std::size_t resolve_limit(std::size_t requested, std::size_t parent_limit) {
  if (requested > parent_limit) {
    throw std::invalid_argument("tidepool::subpool: max_concurrency exceeds the parent's (" +
                                std::to_string(parent_limit) + ")");
  }
  return requested == 0 ? parent_limit : requested;
}

std::size_t slot_limit(std::size_t concurrency, std::size_t capacity) {
  if (capacity == unbounded || capacity > unbounded - concurrency) return unbounded;
  return concurrency + capacity;
}

// The callable of a runner job: one task of the subpool.
struct runner {
  subpool_core* sub;
  void operator()() const noexcept { sub->run_one(); }
};

// The subpools whose tasks this thread is running, innermost first: a record per run_one on the
// stack (runner jobs of nested subpools run inside their parent's run_one; helping waits nest
// further tasks). Lets a destructor tell that it was called from one of its own tasks.
struct running_record {
  const subpool_core* sub;
  const running_record* outer;
};
thread_local const running_record* innermost_running = nullptr;

}  // namespace

subpool_core::subpool_core(pool_core& root, subpool_core* parent, std::size_t max_concurrency, subpool_options options)
    : task_owner(/*direct_pool=*/nullptr, /*stays_local=*/false),
      root_(root),
      parent_(parent),
      queue_capacity_(options.queue_capacity.value_or(parent != nullptr ? parent->queue_capacity() : root.options().queue_capacity)),
      non_blocking_(options.non_blocking.value_or(parent != nullptr ? parent->non_blocking() : root.options().non_blocking)),
      priority_(options.priority ? options.priority : parent != nullptr ? parent->default_priority() : std::nullopt),
      runners_(resolve_limit(max_concurrency, parent_limit())) {
  slot_limit_.store(slot_limit(runners_.limit(), queue_capacity_), std::memory_order_relaxed);
  root_.register_subpool(*this);
}

std::size_t subpool_core::parent_limit() const noexcept {
  return parent_ != nullptr ? parent_->max_concurrency() : root_.worker_count();
}

void subpool_core::set_max_concurrency(std::size_t requested) {
  const std::size_t limit = resolve_limit(requested, parent_limit());
  const std::lock_guard lock(resize_mutex_);
  const std::size_t before = runners_.limit();
  runners_.set_limit(limit);
  // A bounded queue keeps holding queue_capacity tasks beyond the running ones, as the
  // constructor set it. Unbounded stays unbounded (in_flight_ was never counted then).
  if (slot_limit_.load(std::memory_order_relaxed) != unbounded) {
    const std::size_t slots = slot_limit(limit, queue_capacity_);
    slot_limit_.store(slots == unbounded ? unbounded - 1 : slots, std::memory_order_seq_cst);
    // Submitters blocked on a full queue re-check against the new limit.
    if (limit > before && blocked_submitters_.load(std::memory_order_seq_cst) > 0) {
      capacity_epoch_.fetch_add(1, std::memory_order_seq_cst);
      futex_wake_all(capacity_epoch_);
    }
  }
  // Shrinking is left to the runners (over_limit: runner_slots.hpp). Growing: queued tasks need
  // not wait for a running one to end; take the new slots now, one runner job each. A job that
  // then finds the queue empty gives its slot back (at most limit - before such jobs).
  for (std::size_t sent = before; sent < limit && !queue_.empty_estimate() && runners_.try_take(); ++sent) {
    send_runner();
  }
}

subpool_core::~subpool_core() {
  // In a child after fork() the registry's lock may be held by a thread that is not there; the
  // pool's core is never freed in the child, so leaving our entry behind is harmless.
  if (!root_.forked_away()) root_.unregister_subpool(*this);
}

void pool_core::register_subpool(subpool_core& sub) {
  std::lock_guard lock(subpools_mutex_);
  subpools_.push_back(&sub);
}

void pool_core::unregister_subpool(subpool_core& sub) noexcept {
  std::lock_guard lock(subpools_mutex_);
  subpools_.erase(std::find(subpools_.begin(), subpools_.end(), &sub));
}

void pool_core::wake_blocked_subpool_submitters() noexcept {
  std::lock_guard lock(subpools_mutex_);
  for (subpool_core* sub : subpools_) sub->wake_blocked_submitters();
}

void subpool_core::wake_blocked_submitters() noexcept {
  // Dekker with admit(), which announces itself in blocked_submitters_ and then reads every
  // stopping flag (all seq_cst): the stopper set its flag before calling us, so either the
  // submitter sees the flag and does not sleep, or we see it here and bump the epoch it sleeps on.
  if (blocked_submitters_.load(std::memory_order_seq_cst) == 0) return;
  capacity_epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(capacity_epoch_);
}

bool subpool_core::runs_on_this_thread() const noexcept {
  for (const running_record* r = innermost_running; r != nullptr; r = r->outer) {
    if (r->sub == this) return true;
  }
  return false;
}

void subpool_core::orphan() noexcept {
  stop();
  // The calling task (ours, on this thread) holds a unit of pending_ until after we return, so
  // the finish that brings pending_ to zero is still to come, and it sees the flag.
  pending_.abandon();
}

void subpool_core::finish_pending() noexcept {
  if (pending_.finish()) delete this;  // we were orphaned, and this was the last unit
}

bool subpool_core::stopping() const noexcept {
  for (const subpool_core* s = this; s != nullptr; s = s->parent_) {
    if (s->stopping_.load(std::memory_order_seq_cst)) return true;
  }
  return root_.stopping();
}

bool subpool_core::admit(bool from_worker, bool may_block, submit_status& refusal) {
  if (slot_limit_.load(std::memory_order_relaxed) == unbounded) return true;
  std::size_t used = in_flight_.load(std::memory_order_relaxed);
  for (;;) {
    while (used < slot_limit_.load(std::memory_order_seq_cst)) {
      if (in_flight_.compare_exchange_weak(used, used + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
        return true;
      }
    }
    // Full. Workers never block (see subpool.hpp); neither do non-blocking subpools.
    if (from_worker || !may_block || non_blocking_) {
      refusal = submit_status::full;
      return false;
    }
    // As in pool_core::admit: epoch first, then announce, then re-check. Sleeps until a slot
    // frees (release_slot) or this subpool, an ancestor or the pool stops: every stop wakes the
    // blocked submitters of every subpool of the pool (wake_blocked_submitters).
    const std::uint32_t epoch = capacity_epoch_.load(std::memory_order_seq_cst);
    blocked_submitters_.fetch_add(1, std::memory_order_seq_cst);
    used = in_flight_.load(std::memory_order_seq_cst);
    if (used >= slot_limit_.load(std::memory_order_seq_cst) && !stopping()) futex_wait(capacity_epoch_, epoch);
    blocked_submitters_.fetch_sub(1, std::memory_order_relaxed);
    if (stopping()) {
      refusal = submit_status::stopped;
      return false;
    }
    used = in_flight_.load(std::memory_order_relaxed);
  }
}

void subpool_core::release_slot() noexcept {
  if (slot_limit_.load(std::memory_order_relaxed) == unbounded) return;
  in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  if (blocked_submitters_.load(std::memory_order_seq_cst) > 0) {
    capacity_epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_one(capacity_epoch_);
  }
}

void subpool_core::count_dropped() noexcept {
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.dropped.fetch_add(1, std::memory_order_relaxed);
  root_.count_dropped();
}

void subpool_core::refuse(task_node* node) noexcept {
  count_dropped();
  discard_task_node(node);
}

submit_status subpool_core::submit(task_node* node, bool may_block) {
  // See pool_core::submit: in a child after fork() nothing would run it.
  if (root_.forked_away()) {
    refuse(node);
    return submit_status::forked;
  }
  worker* self = root_.worker_of_this_thread();
  if (stopping()) {
    refuse(node);
    return submit_status::stopped;
  }
  submit_status refusal = submit_status::accepted;
  if (!admit(self != nullptr, may_block, refusal)) {
    refuse(node);
    return refusal;
  }
  if (priority_ && (node->flags & flag_priority_given) == 0) node->set_priority(*priority_);
  // The pool counts it first (and refuses it if it is stopping: see pool_core::count_accepted).
  if (!root_.count_accepted(self, node->priority())) {
    release_slot();
    refuse(node);
    return submit_status::stopped;
  }
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.submitted.fetch_add(1, std::memory_order_release);
  if (node->owner == nullptr) node->owner = this;  // a group's task reports to the group, which tells us
  // Two units: the task's, and our own. Once the task is in the queue a runner may run and
  // finish it at once, and the owner may then destroy the subpool, while we still touch it
  // (the queue's hazard release, runners_); our unit keeps the destructor waiting until our
  // last touch, which is its finish.
  pending_.add();
  pending_.add();
  const auto take_back = [&] {
    for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.submitted.fetch_sub(1, std::memory_order_release);
    root_.uncount_accepted(self, node->priority());
    release_slot();
    count_dropped();
    pending_.finish();  // the task's unit
    finish_pending();   // ours, the last touch
    // Destroyed only now: its captures may own the subpool (or what owns it).
    discard_task_node(node);
  };
  // Count, then re-check stopping (both seq_cst): stop_and_wait() sets stopping and then reads
  // pending_, so either it waits for this task or we see the stop and take the task back.
  if (stopping()) {
    take_back();
    return submit_status::stopped;
  }
  root_.sample_submit_time(node);  // accepted: its queue wait starts now
  const bool took_slot = runners_.publish_then_try_take([&] {
    try {
      queue_.enqueue(node);  // seq_cst: the Dekker with run_one's give-back (runner_slots.hpp)
    } catch (...) {          // only std::bad_alloc, for a new segment
      take_back();
      throw;
    }
    test_hooks::at(test_hooks::point::after_subpool_enqueue);
  });
  if (took_slot) send_runner();
  finish_pending();  // our unit: the last touch
  return submit_status::accepted;
}

void subpool_core::send_runner() noexcept {
  pending_.add();  // the runner job's own unit, finished as its last action
  // noexcept: a queued task must always have a runner job coming, so failing to allocate one
  // (128 bytes) cannot be reported to anyone who could act on it; it ends the process.
  task_node* job = make_task_node<runner, void>(runner{this}, task_kind::internal_job);
  if (priority_) job->set_priority(*priority_);
  if (parent_ != nullptr) {
    parent_->enqueue_runner(job);
  } else {
    root_.schedule_internal(job);
  }
}

void subpool_core::enqueue_runner(task_node* job) noexcept {
  pending_.add();  // held while the child's runner job waits in our queue or runs
  if (runners_.publish_then_try_take([&] { queue_.enqueue(job); })) send_runner();
}

void subpool_core::run_one() noexcept {
  worker* w = current_worker();
  // Over the limit (it shrank since this job was sent): run nothing, and give the slot back
  // below, which pass_on_or_give_back does when it sees the same.
  task_node* t = runners_.over_limit() ? nullptr : queue_.try_dequeue();
  if (t != nullptr) {
    const bool child_runner = t->kind == task_kind::internal_job;
    {
      const running_record record{this, innermost_running};
      innermost_running = &record;
      root_.execute(*w, t, /*holds_slot=*/false);
      innermost_running = record.outer;
    }
    // The unit enqueue_runner took for it. Not our last touch: this runner's own unit remains.
    if (child_runner) pending_.finish();
  }
  // Pass our slot on to a new runner job if there is more to do; else give it back and look
  // once more (a submitter that found every slot in use relies on us to see its task).
  if (runners_.pass_on_or_give_back([this] { return !queue_.empty_estimate(); })) send_runner();
  finish_pending();  // this runner job's unit: our last touch
}

void subpool_core::task_started() noexcept {
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.started.fetch_add(1, std::memory_order_release);
}

bool subpool_core::task_ended(const std::exception_ptr* error) noexcept {
  const bool failed = error != nullptr;
  for (subpool_core* s = this; s != nullptr; s = s->parent_) {
    (failed ? s->counters_.failed : s->counters_.succeeded).fetch_add(1, std::memory_order_release);
  }
  release_slot();
  return false;  // a go() task's exception goes on to the pool's handler
}

void subpool_core::task_skipped() noexcept {
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.cancelled.fetch_add(1, std::memory_order_release);
  release_slot();
}

void subpool_core::task_expired() noexcept {
  for (subpool_core* s = this; s != nullptr; s = s->parent_) s->counters_.expired.fetch_add(1, std::memory_order_release);
  release_slot();
}

void subpool_core::stop() noexcept {
  stopping_.store(true, std::memory_order_seq_cst);
  // Our own blocked submitters, and those of every subpool nested in us (they check our flag).
  // Not in a child after fork(): see ~subpool_core.
  if (root_.forked_away()) return;
  root_.wake_blocked_subpool_submitters();
  // Delayed tasks not yet due are cancelled and periodic timers end, ours and nested ones'.
  root_.timers().cancel_stopping_subpools();
}

void subpool_core::stop_and_wait() {
  stop();
  if (root_.forked_away()) return;  // as for the pool: no worker here will finish anything
  std::atomic_thread_fence(std::memory_order_seq_cst);  // stopping_ before pending_: see submit()
  wait_until_done(pending_);
}

pool_metrics subpool_core::metrics() const {
  pool_metrics m;
  // Finished first, submitted last, as in pool_core::metrics.
  m.succeeded = counters_.succeeded.load(std::memory_order_acquire);
  m.failed = counters_.failed.load(std::memory_order_acquire);
  m.cancelled = counters_.cancelled.load(std::memory_order_acquire);
  m.expired = counters_.expired.load(std::memory_order_acquire);
  const std::uint64_t started = counters_.started.load(std::memory_order_acquire);
  m.scheduled = counters_.scheduled.load(std::memory_order_seq_cst);
  m.submitted = counters_.submitted.load(std::memory_order_acquire);
  m.dropped = counters_.dropped.load(std::memory_order_relaxed);
  m.running = started - m.succeeded - m.failed;
  m.waiting = m.submitted - started - m.cancelled - m.expired - m.scheduled;
  m.queue_segments = queue_.segments_allocated();
  m.retired_segments = queue_.reclamation_domain().unreclaimed();
  m.retired_segments_bound = queue_.reclamation_domain().unreclaimed_bound();
  return m;
}

}  // namespace detail

subpool::subpool(pool& parent, std::size_t max_concurrency, subpool_options options)
    : core_(std::make_unique<detail::subpool_core>(detail::pool_access::core(parent), nullptr, max_concurrency, options)) {}

subpool::subpool(subpool& parent, std::size_t max_concurrency, subpool_options options)
    : core_(std::make_unique<detail::subpool_core>(parent.core_->root(), parent.core_.get(), max_concurrency, options)) {}

subpool::~subpool() {
  // From one of our own tasks we cannot wait for that task (see subpool.hpp).
  if (core_->runs_on_this_thread()) {
    core_.release()->orphan();
    return;
  }
  core_->stop_and_wait();
}

detail::task_owner& detail::subpool_access::owner(subpool& s) noexcept { return *s.core_; }

detail::submit_status subpool::submit_node(detail::task_node* node, bool may_block) { return core_->submit(node, may_block); }
void subpool::stop() { core_->stop(); }
void subpool::stop_and_wait() { core_->stop_and_wait(); }
bool subpool::stopped() const noexcept { return core_->stopping(); }
pool_metrics subpool::metrics() const { return core_->metrics(); }
std::size_t subpool::max_concurrency() const noexcept { return core_->max_concurrency(); }
void subpool::set_max_concurrency(std::size_t n) { core_->set_max_concurrency(n); }

}  // namespace tidepool
