#include "metrics/process_metrics.h"

#include <unistd.h>

#include <fstream>

#include "metrics/scrape_time_metrics.h"

namespace jamba {

int64_t ResidentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * sysconf(_SC_PAGESIZE);
}

std::shared_ptr<prometheus::Collectable> ProcessMetrics(std::function<BuildInfo()> get_info) {
  return std::make_shared<ScrapeTimeMetrics>([get_info] {
    const BuildInfo info = get_info();
    return std::vector<prometheus::MetricFamily>{
        GaugeFamily("jamba_build_info", "Build and model of this process (value 1)",
                    {{{{"component", info.component},
                       {"version", JAMBA_VERSION},
                       {"backend", info.backend},
                       {"model_fingerprint", info.model_fingerprint}},
                      1.0}}),
        GaugeFamily(
            "jamba_process_resident_memory_bytes", "Resident set size of the process",
            {{{{"component", info.component}}, static_cast<double>(ResidentMemoryBytes())}}),
    };
  });
}

}  // namespace jamba
