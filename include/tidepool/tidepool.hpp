#pragma once
// tidepool: a lock-free work-stealing task scheduler that never keeps a finished task alive.
// This header brings in the whole public API.

#include "tidepool/blocked_range2d.hpp"  // for blocked_range2d, index_range, parallel_for over them
#include "tidepool/coro.hpp"        // for co_task, when_all, spawn, sync_wait, schedule
#include "tidepool/default_pool.hpp"  // for default_pool, submit, go
#include "tidepool/errors.hpp"      // for error, pool_stopped, queue_full, task_cancelled, task_expired
#include "tidepool/fork_join.hpp"   // for parallel_invoke, parallel_for, parallel_reduce
#include "tidepool/metrics.hpp"     // for pool_metrics
#include "tidepool/parallel_scan.hpp"  // for parallel_inclusive_scan, parallel_exclusive_scan
#include "tidepool/parallel_sort.hpp"  // for parallel_sort
#include "tidepool/partitioner.hpp"    // for auto_partitioner, static_partitioner, simple_partitioner
#include "tidepool/pool.hpp"        // for pool, pool_options, unbounded
#include "tidepool/priority.hpp"    // for priority
#include "tidepool/prometheus.hpp"  // for to_prometheus
#include "tidepool/submit_options.hpp"  // for submit_options
#include "tidepool/subpool.hpp"     // for subpool, subpool_options
#include "tidepool/task.hpp"        // for task
#include "tidepool/task_group.hpp"  // for task_group
#include "tidepool/this_worker.hpp"  // for this_worker_index
#include "tidepool/timer.hpp"       // for timer (go_every)
