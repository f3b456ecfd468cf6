import DBus

/// What went wrong with a request to concierge (`org.vmtools.Error.<Kind>` on D-Bus).
public typealias ConciergeError = ServiceError
