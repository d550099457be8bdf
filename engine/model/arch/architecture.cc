#include "engine/model/arch/architecture.h"

namespace jamba {

const ArchitectureSpec& ArchitectureFor(Architecture arch) {
  switch (arch) {
    case Architecture::kJamba: return JambaArchitecture();
    case Architecture::kMamba:
    case Architecture::kFalconMamba: return MambaArchitecture();
    case Architecture::kMixtral: return MixtralArchitecture();
  }
  return JambaArchitecture();
}

}  // namespace jamba
