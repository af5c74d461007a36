package overlay

import "errors"

var (
	// ErrClosed is returned by operations on an overlay that has been closed.
	ErrClosed = errors.New("overlay: closed")
	// ErrInvalidTopic is returned for a topic name outside the allowed alphabet or length.
	ErrInvalidTopic = errors.New("overlay: invalid topic name")
	// ErrMessageTooLarge is returned when a payload exceeds Config.MaxMessageSize.
	ErrMessageTooLarge = errors.New("overlay: message too large")
	// ErrEmptyMessage is returned when publishing an empty payload.
	ErrEmptyMessage = errors.New("overlay: empty message")
	// ErrBacklogFull is returned by Publish when too many messages already
	// wait for a subscriber of their topic to be found: slow down.
	ErrBacklogFull = errors.New("overlay: publish backlog full")
	// ErrRateLimited is returned by Publish beyond Config.PublisherMessageRate:
	// other peers would drop the excess and count it against this one.
	ErrRateLimited = errors.New("overlay: publish rate exceeded")
	// ErrTooManyTopics is returned by Subscribe and Publish when the topic
	// table (Config.MaxTopics, Config.MaxPublishTopics) is full of topics
	// that cannot be left yet: try again later.
	ErrTooManyTopics = errors.New("overlay: topic table full")
	// ErrUnauthorized is returned, and messages are refused, when a
	// publish on an app topic lacks a valid credential (authorize.go).
	ErrUnauthorized = errors.New("overlay: not authorized to publish")
	// ErrNoHistory is returned by History for a topic this node keeps no
	// history of (not subscribed, history off for it, or over
	// HistoryConfig.MaxTopics).
	ErrNoHistory = errors.New("overlay: no history kept")
)

// ErrDHTBudget is returned by the DHT datastore for a record that would
// overrun one of its budgets (Config.DHTBudget): it is refused, not stored.
var ErrDHTBudget = errors.New("overlay: DHT store budget")
