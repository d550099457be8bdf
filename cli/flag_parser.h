// A small command-line parser for our tools (jamba-run, jambactl, jamba-bench): GNU-style
// `--name VALUE` / `--name=VALUE` flags, boolean `--name`, `--help`, and generated help text.
// Errors are values naming the flag, so a tool prints them and exits non-zero.
#ifndef JAMBA_CLI_FLAG_PARSER_H_
#define JAMBA_CLI_FLAG_PARSER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace jamba {

class FlagParser {
 public:
  // `usage`: the synopsis line(s); `description`: a paragraph printed under it.
  FlagParser(std::string usage, std::string description)
      : usage_(std::move(usage)), description_(std::move(description)) {}

  // Registers --name. `section` groups flags in the help text. Targets keep their value when
  // the flag is absent, and that value is shown as the default.
  void String(const std::string& name, std::string* target, const std::string& help,
              const std::string& section = "", const std::string& value_name = "TEXT");
  void Int(const std::string& name, int64_t* target, const std::string& help,
           const std::string& section = "");
  void Int32(const std::string& name, int32_t* target, const std::string& help,
             const std::string& section = "");
  void Float(const std::string& name, float* target, const std::string& help,
             const std::string& section = "");
  void Bool(const std::string& name, bool* target, const std::string& help,
            const std::string& section = "");
  // --name may be given several times; each value is passed to `append`.
  void Repeated(const std::string& name, std::function<absl::Status(absl::string_view)> append,
                const std::string& value_name, const std::string& help,
                const std::string& section = "");
  // A flag with custom parsing (e.g. a comma-separated list).
  void Custom(const std::string& name, std::function<absl::Status(absl::string_view)> set,
              const std::string& value_name, const std::string& help,
              const std::string& section = "");

  // Parses argv[first..argc). Non-flag arguments go to `positional` (an error if null).
  // `--help`/`-h` sets help_requested() and stops. "--" ends the flags.
  absl::Status Parse(int argc, const char* const* argv, int first,
                     std::vector<std::string>* positional = nullptr);
  bool help_requested() const { return help_requested_; }
  // For a tool's main(): parses argv[1..]. With --help, prints Help() to stdout and returns 0;
  // on a usage error, prints "<program>: <message>" to stderr and returns 2; otherwise returns
  // nullopt and the tool goes on.
  absl::optional<int> ParseMain(int argc, const char* const* argv, const std::string& program);
  // True if --name appeared on the command line.
  bool Seen(const std::string& name) const;

  std::string Help() const;

 private:
  struct Flag {
    std::string name, value_name, help, section, default_text;
    bool takes_value = true;
    std::function<absl::Status(absl::string_view)> set;
    bool seen = false;
  };
  static Flag MakeFlag(std::string name, std::string value_name, std::string help,
                       std::string section, std::string default_text);
  Flag* Find(absl::string_view name);
  void Add(Flag flag);

  std::string usage_, description_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// Parses "1,2,3" (spaces allowed around items) into ids; errors name `flag` and the bad item.
absl::Status ParseIdList(absl::string_view text, const std::string& flag,
                         std::vector<int32_t>* out);

}  // namespace jamba

#endif  // JAMBA_CLI_FLAG_PARSER_H_
