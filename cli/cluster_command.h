// `jambactl cluster up`: a whole cluster on this machine from one command.
#ifndef JAMBA_CLI_CLUSTER_COMMAND_H_
#define JAMBA_CLI_CLUSTER_COMMAND_H_

namespace jamba {

// argv[0] is "cluster"; argv[1] the action ("up").
int RunClusterCommand(int argc, char** argv);

}  // namespace jamba

#endif  // JAMBA_CLI_CLUSTER_COMMAND_H_
