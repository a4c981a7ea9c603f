package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/smartmaint/smartmaint/collector/internal/config"
)

// ReadSecret returns the secret named by s: the environment variable
// through getenv, or the file (trailing newline trimmed). Errors name the
// source, never the value.
func ReadSecret(s config.Secret, getenv func(string) string) (string, error) {
	switch {
	case s.Env != "":
		v := getenv(s.Env)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty or unset", s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("cannot read secret file: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", s.File)
		}
		return v, nil
	}
	return "", nil
}

func tlsWithCA(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// BuildChannels makes the senders of the configured channels, reading
// their secrets through getenv and the file system. hostname names this
// collector (MQTT client id, EHLO). It reports every problem at once.
func BuildChannels(cfg []config.Channel, getenv func(string) string, hostname string) ([]Channel, error) {
	var out []Channel
	var errs []error
	for _, c := range cfg {
		secret, err := ReadSecret(c.Secret, getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("channel %s: secret: %w", c.Name, err))
			continue
		}
		tc, err := tlsWithCA(c.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("channel %s: %w", c.Name, err))
			continue
		}
		client := &http.Client{}
		if tc != nil {
			client.Transport = &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}
		}
		var s Sender
		switch c.Type {
		case "webhook":
			s = &WebhookSender{URL: c.URL, Secret: []byte(secret), Client: client}
		case "slack":
			s = &SlackSender{URL: secret, Client: client}
		case "alertmanager":
			s = &AlertmanagerSender{URL: c.URL, Client: client}
		case "email":
			s = &EmailSender{Host: c.SMTPHost, Port: c.SMTPPort, Username: c.Username, Password: secret, From: c.From,
				To: c.To, TLS: c.TLS, TLSConfig: tc, LocalName: hostname}
		case "mqtt":
			id := c.ClientID
			if id == "" {
				id = "sm-collector-" + hostname + "-" + c.Name
			}
			s = &MQTTSender{Broker: c.Broker, Topic: c.Topic, QoS: byte(c.QoS), Retain: c.Retain, ClientID: id,
				Username: c.Username, Password: secret, TLSConfig: tc}
		default:
			errs = append(errs, fmt.Errorf("channel %s: unknown type %q", c.Name, c.Type))
			continue
		}
		out = append(out, Channel{Name: c.Name, Sender: s, RatePerMinute: c.RatePerMinute, Burst: c.Burst})
	}
	return out, errors.Join(errs...)
}
