import GRPCCore
import GuestProtocol

extension MaitredService {
    public func startContainer(
        request: Vmtools_Guest_StartContainerRequest, context: ServerContext
    ) async throws -> Vmtools_Guest_StartContainerResponse {
        var start = ContainerManager.Request(name: request.name, rootfs: request.rootfs, token: request.token)
        start.hostname = request.hostname
        start.command = request.command
        start.garconArguments = request.garconArguments
        start.environment = request.env
        start.changesDirectory = request.changesDir
        let container = try containers.start(start)
        KernelLog.info("container \(container.name) started: pid \(container.pid), root \(container.rootfs)")
        var response = Vmtools_Guest_StartContainerResponse()
        response.pid = UInt32(container.pid)
        return response
    }

    public func stopContainer(
        request: Vmtools_Guest_StopContainerRequest, context: ServerContext
    ) async throws -> Vmtools_Guest_Empty {
        try await containers.stop(
            request.name, grace: .seconds(Int(request.graceSeconds == 0 ? 10 : request.graceSeconds)))
        return Vmtools_Guest_Empty()
    }

    public func listContainers(
        request: Vmtools_Guest_Empty, context: ServerContext
    ) async throws -> Vmtools_Guest_ContainerList {
        var list = Vmtools_Guest_ContainerList()
        list.containers = containers.containers.map { running in
            var container = Vmtools_Guest_Container()
            container.name = running.name
            container.rootfs = running.rootfs
            container.pid = UInt32(running.pid)
            container.hostname = running.hostname
            return container
        }
        return list
    }
}
