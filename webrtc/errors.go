package webrtc

import "errors"

var (
	// ErrClosed is returned by operations on a closed Server or Client.
	ErrClosed = errors.New("webrtc: closed")

	// ErrTokenMalformed is returned for a token that is not a well-formed
	// HS256 JWT carrying valid Immense claims.
	ErrTokenMalformed = errors.New("webrtc: malformed token")
	// ErrTokenSignature is returned for a token whose algorithm is not HS256
	// or whose signature does not match the secret.
	ErrTokenSignature = errors.New("webrtc: token signature invalid")
	// ErrTokenExpired is returned for a token past its expiry.
	ErrTokenExpired = errors.New("webrtc: token expired")
	// ErrTokenNotYetValid is returned for a token issued in the future or
	// used before its nbf claim.
	ErrTokenNotYetValid = errors.New("webrtc: token not yet valid")

	// ErrSecretTooShort is returned for a token secret shorter than
	// MinSecretSize bytes.
	ErrSecretTooShort = errors.New("webrtc: token secret too short")

	// ErrInvalidTopic is returned for a topic name or topic pattern outside
	// the rules of ValidateTopic.
	ErrInvalidTopic = errors.New("webrtc: invalid topic")
	// ErrFrameTooLarge is returned for a frame longer than the configured
	// maximum frame size.
	ErrFrameTooLarge = errors.New("webrtc: frame too large")
	// ErrBadFrame is returned for bytes that do not decode as a valid frame.
	ErrBadFrame = errors.New("webrtc: bad frame")
	// ErrUnsupportedVersion is returned for a frame of another protocol
	// version than FrameVersion.
	ErrUnsupportedVersion = errors.New("webrtc: unsupported frame version")
)
