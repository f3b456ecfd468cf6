import DBus

/// What went wrong with a request to seneschal (`org.vmtools.Error.<Kind>` on D-Bus).
public typealias SeneschalError = ServiceError
