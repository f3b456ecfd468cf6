import DBus

/// What went wrong with a request to cicerone (`org.vmtools.Error.<Kind>` on D-Bus).
public typealias CiceroneError = ServiceError
