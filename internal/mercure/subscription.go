package mercure

import (
	"encoding/json"
	"net/url"
	"time"
)

// The subscriptions API: the active subscriptions of a hub, and the private updates that
// announce each subscription's start and end.

// JSONLDContext is the @context of the subscription documents.
const JSONLDContext = "https://mercure.rocks/"

// SubscriptionsPath is the subscriptions API's path, below which every subscription has its own.
const SubscriptionsPath = reservedTopic + "/subscriptions"

// Subscription is the document of one subscription: one topic selector of one subscriber.
type Subscription struct {
	Context     string          `json:"@context,omitempty"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Subscriber  string          `json:"subscriber"`
	Topic       string          `json:"topic"`
	Active      bool            `json:"active"`
	LastEventID string          `json:"lastEventID,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
}

// Subscriptions is a collection document of the subscriptions API.
type Subscriptions struct {
	Context       string         `json:"@context"`
	ID            string         `json:"id"`
	Type          string         `json:"type"`
	LastEventID   string         `json:"lastEventID"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// Listing is what a hub remembers of a subscriber for the subscriptions API: its id and the
// payload of its token.
type Listing struct {
	Subscriber string          `json:"subscriber"`
	Payload    json.RawMessage `json:"payload,omitempty"`
}

// NewSubscriberID returns a fresh subscriber id: a urn:uuid IRI.
func NewSubscriberID() string { return "urn:uuid:" + newUUIDv7(time.Now()) }

// SubscriptionID is the id, and the topic of the updates, of subscriber's subscription to
// topic: /.well-known/mercure/subscriptions/{topic}/{subscriber}, both escaped.
func SubscriptionID(topic, subscriber string) string {
	return SubscriptionsPath + "/" + url.QueryEscape(topic) + "/" + url.QueryEscape(subscriber)
}

// Subscriptions returns the documents of l's subscriptions, one per topic selector.
func (l Listing) Subscriptions(topics []string, active bool) []Subscription {
	out := make([]Subscription, len(topics))
	for i, t := range topics {
		out[i] = Subscription{ID: SubscriptionID(t, l.Subscriber), Type: "Subscription", Subscriber: l.Subscriber,
			Topic: t, Active: active, Payload: l.Payload}
	}
	return out
}

// Events returns the private updates that announce l's subscriptions starting (active) or
// ending, one per topic selector; only subscribers whose tokens' mercure.subscribe matches
// their topics receive them.
func (l Listing) Events(topics []string, active bool) []Update {
	subs := l.Subscriptions(topics, active)
	out := make([]Update, len(subs))
	for i, s := range subs {
		s.Context = JSONLDContext
		data, err := json.Marshal(s)
		if err != nil {
			panic("mercure: encode subscription: " + err.Error()) // strings and valid JSON only
		}
		out[i] = Update{Topics: []string{s.ID}, Private: true, Data: string(data)}
		out[i].AssignID()
	}
	return out
}
