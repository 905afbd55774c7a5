// to_prometheus: the text exposition format's rules, checked line by line.

#include "tidepool/prometheus.hpp"

#include <gtest/gtest.h>

#include <map>        // for std::map
#include <set>        // for std::set
#include <sstream>    // for std::istringstream
#include <stdexcept>  // for std::invalid_argument
#include <string>     // for std::string

#include "tidepool/pool.hpp"

namespace {

struct parsed {
  std::map<std::string, std::string> type;  // metric -> counter/gauge
  std::set<std::string> help;
  std::map<std::string, double> value;
};

// [a-zA-Z_:][a-zA-Z0-9_:]*, written out (std::regex draws false -Wmaybe-uninitialized
// warnings from g++ 12 in the sanitizer build).
bool valid_name(const std::string& name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Parses the exposition, failing the test on any line that breaks the format's rules.
parsed parse(const std::string& text) {
  parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty()) << "no blank lines";
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_TRUE(p.help.insert(name).second) << "one HELP per metric: " << line;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      const std::string type = rest.substr(rest.find(' ') + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge") << line;
      EXPECT_TRUE(p.help.contains(name)) << "HELP before TYPE: " << line;
      EXPECT_TRUE(p.type.emplace(name, type).second) << "one TYPE per metric: " << line;
    } else {
      const std::string name = line.substr(0, line.find(' '));
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_TRUE(p.type.contains(name)) << "TYPE before the sample: " << line;
      std::size_t used = 0;
      const std::string number = line.substr(line.find(' ') + 1);
      const double v = std::stod(number, &used);
      EXPECT_EQ(used, number.size()) << "a plain number: " << line;
      p.value[name] = v;
    }
  }
  return p;
}

TEST(Prometheus, ExpositionFollowsTheTextFormatAndCarriesTheValues) {
  tidepool::pool_metrics m;
  m.submitted = 10;
  m.succeeded = 6;
  m.failed = 2;
  m.cancelled = 1;
  m.waiting = 0;
  m.running = 1;
  m.dropped = 3;
  m.steals = 42;
  const parsed p = parse(tidepool::to_prometheus(m, "app_pool"));
  EXPECT_EQ(p.value.at("app_pool_tasks_submitted_total"), 10);
  EXPECT_EQ(p.value.at("app_pool_tasks_succeeded_total"), 6);
  EXPECT_EQ(p.value.at("app_pool_tasks_failed_total"), 2);
  EXPECT_EQ(p.value.at("app_pool_tasks_cancelled_total"), 1);
  EXPECT_EQ(p.value.at("app_pool_tasks_dropped_total"), 3);
  EXPECT_EQ(p.value.at("app_pool_tasks_running"), 1);
  EXPECT_EQ(p.value.at("app_pool_steals_total"), 42);
  for (const auto& [name, type] : p.type) {
    EXPECT_EQ(type == "counter", name.ends_with("_total")) << name << " is a " << type;
    EXPECT_TRUE(p.value.contains(name)) << name << " has no sample";
  }
}

TEST(Prometheus, LiveMetricsOfAPoolExpose) {
  tidepool::pool p;
  p.submit([] {}).get();
  p.stop_and_wait();
  const parsed out = parse(tidepool::to_prometheus(p.metrics(), "tidepool"));
  EXPECT_EQ(out.value.at("tidepool_tasks_succeeded_total"), 1);
  EXPECT_GE(out.value.at("tidepool_retired_segments_bound"), out.value.at("tidepool_retired_segments"));
}

TEST(Prometheus, InvalidPrefixIsRejected) {
  const tidepool::pool_metrics m;
  EXPECT_THROW(static_cast<void>(tidepool::to_prometheus(m, "")), std::invalid_argument);
  EXPECT_THROW(static_cast<void>(tidepool::to_prometheus(m, "9lives")), std::invalid_argument);
  EXPECT_THROW(static_cast<void>(tidepool::to_prometheus(m, "has space")), std::invalid_argument);
  EXPECT_NO_THROW(static_cast<void>(tidepool::to_prometheus(m, "ns:sub_system")));
}

}  // namespace
