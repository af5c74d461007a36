package webrtc

import "errors"

var (
	// ErrClosed is returned by operations on a closed Server or Client.
	ErrClosed = errors.New("webrtc: closed")

	// ErrTokenMalformed is returned for a token that is not a well-formed
	// JWT carrying valid Immense claims.
	ErrTokenMalformed = errors.New("webrtc: malformed token")
	// ErrTokenSignature is returned for a token whose algorithm the peer
	// has no key for, or whose signature does not match the key.
	ErrTokenSignature = errors.New("webrtc: token signature invalid")
	// ErrTokenExpired is returned for a token past its expiry.
	ErrTokenExpired = errors.New("webrtc: token expired")
	// ErrTokenNotYetValid is returned for a token issued in the future or
	// used before its nbf claim.
	ErrTokenNotYetValid = errors.New("webrtc: token not yet valid")
	// ErrTokenTTL is returned for a token valid for longer (exp - iat) than
	// the peer accepts (Config.MaxTokenTTL).
	ErrTokenTTL = errors.New("webrtc: token lifetime too long")
	// ErrTokenRevoked is returned for a token whose jti the peer was told to
	// refuse (Config.RevokedTokens).
	ErrTokenRevoked = errors.New("webrtc: token revoked")

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
