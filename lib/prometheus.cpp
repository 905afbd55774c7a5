#include "tidepool/prometheus.hpp"

#include <cstdint>    // for std::uint64_t
#include <stdexcept>  // for std::invalid_argument

namespace tidepool {
namespace {

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

enum class kind { counter, gauge };

void append(std::string& out, std::string_view prefix, std::string_view name, kind k, std::string_view help,
            std::uint64_t value) {
  std::string full(prefix);
  full += '_';
  full += name;
  if (k == kind::counter) full += "_total";
  out += "# HELP " + full + ' ' + std::string(help) + '\n';
  out += "# TYPE " + full + (k == kind::counter ? " counter\n" : " gauge\n");
  out += full + ' ' + std::to_string(value) + '\n';
}

}  // namespace

std::string to_prometheus(const pool_metrics& m, std::string_view prefix) {
  if (!valid_metric_name(prefix)) {
    throw std::invalid_argument("tidepool::to_prometheus: '" + std::string(prefix) + "' is not a valid metric name");
  }
  std::string out;
  out.reserve(4096);
  append(out, prefix, "tasks_submitted", kind::counter, "Tasks accepted.", m.submitted);
  append(out, prefix, "tasks_succeeded", kind::counter, "Tasks that returned normally.", m.succeeded);
  append(out, prefix, "tasks_failed", kind::counter, "Tasks that threw.", m.failed);
  append(out, prefix, "tasks_cancelled", kind::counter, "Accepted tasks skipped before they started.", m.cancelled);
  append(out, prefix, "tasks_dropped", kind::counter, "Submissions refused (pool stopped or queue full).", m.dropped);
  append(out, prefix, "tasks_waiting", kind::gauge, "Accepted tasks not started yet.", m.waiting);
  append(out, prefix, "tasks_running", kind::gauge, "Tasks running now.", m.running);
  append(out, prefix, "local_pushes", kind::counter, "Tasks a worker put on its own deque.", m.local_pushes);
  append(out, prefix, "overflow_pushes", kind::counter, "Tasks a worker sent to the global queue.", m.overflow_pushes);
  append(out, prefix, "global_pushes", kind::counter, "Tasks that entered the global queue.", m.global_pushes);
  append(out, prefix, "global_pops", kind::counter, "Tasks workers took from the global queue.", m.global_pops);
  append(out, prefix, "steal_attempts", kind::counter, "Attempts to steal from another worker.", m.steal_attempts);
  append(out, prefix, "steals", kind::counter, "Successful steals.", m.steals);
  append(out, prefix, "inline_runs", kind::counter, "Tasks run by their submitting worker, the queue being full.",
         m.inline_runs);
  append(out, prefix, "parks", kind::counter, "Times a worker went to sleep.", m.parks);
  append(out, prefix, "wakeups", kind::counter, "Times a sleeping worker was woken.", m.wakeups);
  append(out, prefix, "queue_segments", kind::gauge, "Global queue segments allocated.", m.queue_segments);
  append(out, prefix, "retired_segments", kind::gauge, "Retired global queue segments not yet reclaimed.",
         m.retired_segments);
  append(out, prefix, "retired_segments_bound", kind::gauge, "The most retired segments that can await reclamation.",
         m.retired_segments_bound);
  return out;
}

}  // namespace tidepool
