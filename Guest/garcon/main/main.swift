// garcon: the agent in a vmtools container (maitred starts it as the container's first process).
// The guest image runs maitred as garcon instead of this executable (see GarconCommand); this
// one is for containers and tests without maitred.
//
//   garcon [--listen ADDRESS] [--host ADDRESS|none] [--token-file PATH]
//   garcon open-url URL
//
// main stays synchronous: GarconCommand blocks SIGTERM before any thread exists.
import GarconAgent

GarconCommand.main(CommandLine.arguments.dropFirst())
