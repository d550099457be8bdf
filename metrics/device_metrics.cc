#include "metrics/device_metrics.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace jamba {

void AddDeviceMemoryMetrics(Telemetry& telemetry, const Backend* backend) {
  if (!backend->MemoryInfo().has_value()) return;
  const std::string device = backend->name();
  telemetry.AddScrapeTimeMetrics([backend, device] {
    std::vector<prometheus::MetricFamily> out;
    const std::optional<DeviceMemoryInfo> m = backend->MemoryInfo();
    if (!m.has_value()) return out;  // a failed query skips this scrape's samples
    const MetricLabels labels = {{"device", device}};
    out.push_back(GaugeFamily("jamba_device_memory_used_bytes",
                              "Device memory in use (by every process on the device)",
                              {{labels, static_cast<double>(m->used_bytes)}}));
    out.push_back(GaugeFamily("jamba_device_memory_total_bytes", "Device memory",
                              {{labels, static_cast<double>(m->total_bytes)}}));
    return out;
  });
}

}  // namespace jamba
