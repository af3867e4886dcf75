package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/logging"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Tags on every instance and volume fleetd creates. TagFleet and
// TagProvider are the ownership mark: the provider lists, and deletes, only
// instances whose TagFleet equals its fleet's name and whose TagProvider
// equals its own name, so two providers of one fleet in the same account and
// region never see each other's machines.
const (
	TagFleet        = "fleetd.io/fleet"
	TagProvider     = "fleetd.io/provider"
	TagCluster      = "fleetd.io/cluster"
	TagTeam         = "fleetd.io/team"
	TagPool         = "fleetd.io/pool"
	TagTemplateHash = "fleetd.io/template-hash"
	TagName         = "Name"
)

// EC2API is the part of the EC2 client the provider calls. *ec2.Client
// implements it; tests may stand in for it.
type EC2API interface {
	RunInstances(ctx context.Context, in *ec2.RunInstancesInput, optFns ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error)
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput, optFns ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	DescribeImages(ctx context.Context, in *ec2.DescribeImagesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
}

var _ EC2API = (*ec2.Client)(nil)

// Config configures a Provider.
type Config struct {
	// Fleet is the fleet's name, the value of TagFleet.
	Fleet string
	// Name is the provider's name in fleet.yaml.
	Name string
	// Spec is the provider's aws block of fleet.yaml.
	Spec schema.AWSProvider

	// Endpoint, when set, replaces EC2's regional endpoint (the SDK's
	// BaseEndpoint); tests point it at ec2test.
	Endpoint string
	// MaxAttempts bounds the attempts of one API call, retries included
	// (default: the SDK's, 3).
	MaxAttempts int
	// RetryMode is the SDK's retry mode: standard (default) or adaptive, which
	// also rate-limits the client after throttling.
	RetryMode sdkaws.RetryMode
	// MaxBackoff caps the delay between attempts (default: the SDK's, 20s).
	MaxBackoff time.Duration
	// Credentials, when set, replaces the SDK's default credential chain and
	// Spec.Credentials; tests use static credentials.
	Credentials sdkaws.CredentialsProvider

	// Concurrency bounds the RunInstances calls in flight during one Create
	// (default 4).
	Concurrency int
	// Logger receives the provider's logs (default: none).
	Logger *slog.Logger
}

// Provider is reconcile.Provider on EC2 for one provider entry of a fleet.
// Its methods are safe for concurrent use.
type Provider struct {
	fleet       string
	name        string
	spec        schema.AWSProvider
	api         EC2API
	log         *slog.Logger
	concurrency int

	mu          sync.Mutex
	rootDevices map[string]string // image ID -> root device name
}

var _ reconcile.Provider = (*Provider)(nil)

const defaultConcurrency = 4

// New returns a Provider that talks to EC2 in cfg.Spec.Region with
// aws-sdk-go-v2. Credentials come from cfg.Credentials when set; otherwise
// from the profile that the environment variable named by
// cfg.Spec.Credentials (env:NAME) holds; otherwise from the SDK's default
// chain (environment, shared config and profiles, web identity, IMDS).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Spec.Region == "" {
		return nil, fmt.Errorf("aws: provider %s: no region", cfg.Name)
	}
	var retryer func() sdkaws.Retryer
	switch cfg.RetryMode {
	case "", sdkaws.RetryModeStandard, sdkaws.RetryModeAdaptive:
		retryer = newRetryer(cfg)
	default:
		return nil, fmt.Errorf("aws: provider %s: unknown retry mode %q (want standard or adaptive)", cfg.Name, cfg.RetryMode)
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Spec.Region),
		config.WithRetryer(retryer),
		config.WithLogger(sdkLogger{log: providerLogger(cfg)}),
	}
	switch {
	case cfg.Credentials != nil:
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	case cfg.Spec.Credentials != "":
		profile, err := profileFromEnv(cfg.Spec.Credentials)
		if err != nil {
			return nil, fmt.Errorf("aws: provider %s: %w", cfg.Name, err)
		}
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws: provider %s: load SDK config: %w", cfg.Name, err)
	}
	client := ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = sdkaws.String(cfg.Endpoint)
		}
		// The SDK has built its HTTP client by now (CA bundle, timeouts).
		o.HTTPClient = readOnlyBodies{next: o.HTTPClient}
	})
	return NewWithClient(cfg, client)
}

// NewWithClient returns a Provider that makes its calls through api. Only
// cfg's Fleet, Name, Spec, Concurrency and Logger are used: retries and
// credentials are api's business.
func NewWithClient(cfg Config, api EC2API) (*Provider, error) {
	switch {
	case cfg.Fleet == "":
		return nil, errors.New("aws: no fleet name")
	case cfg.Name == "":
		return nil, errors.New("aws: no provider name")
	case len(cfg.Spec.Subnets) == 0:
		return nil, fmt.Errorf("aws: provider %s: no subnets", cfg.Name)
	case api == nil:
		return nil, fmt.Errorf("aws: provider %s: no EC2 client", cfg.Name)
	}
	n := cfg.Concurrency
	if n <= 0 {
		n = defaultConcurrency
	}
	return &Provider{
		fleet:       cfg.Fleet,
		name:        cfg.Name,
		spec:        cfg.Spec,
		api:         api,
		log:         providerLogger(cfg),
		concurrency: n,
		rootDevices: map[string]string{},
	}, nil
}

// Name returns the provider's name in fleet.yaml.
func (p *Provider) Name() string { return p.name }

// providerLogger returns cfg's logger with the provider and fleet attached.
func providerLogger(cfg Config) *slog.Logger {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("provider", cfg.Name, "fleet", cfg.Fleet)
}

// sdkLogger sends the SDK's own log lines (warnings, and whatever
// ClientLogMode enables) to the provider's structured log instead of
// stderr. The provider enables no request or response body logging, which
// would carry user data.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "AWS SDK", "detail", fmt.Sprintf(format, v...))
}

// newRetryer returns the SDK retryer cfg asks for. Both modes retry
// throttling (RequestLimitExceeded and kin), 5xx responses and connection
// errors with exponential backoff and jitter.
func newRetryer(cfg Config) func() sdkaws.Retryer {
	standard := func(o *retry.StandardOptions) {
		if cfg.MaxAttempts > 0 {
			o.MaxAttempts = cfg.MaxAttempts
		}
		if cfg.MaxBackoff > 0 {
			o.MaxBackoff = cfg.MaxBackoff
		}
	}
	return func() sdkaws.Retryer {
		if cfg.RetryMode == sdkaws.RetryModeAdaptive {
			return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
				o.StandardOptions = append(o.StandardOptions, standard)
			})
		}
		return retry.NewStandard(standard)
	}
}

// profileFromEnv resolves a credentials reference of fleet.yaml: env:NAME,
// where the environment variable NAME holds the name of an AWS profile.
func profileFromEnv(ref string) (string, error) {
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok || name == "" {
		return "", fmt.Errorf("credentials %q: want env:NAME, NAME being an environment variable that holds an AWS profile name", ref)
	}
	profile := os.Getenv(name)
	if profile == "" {
		return "", fmt.Errorf("credentials %s: environment variable %s is not set; it names the AWS profile to use", ref, name)
	}
	return profile, nil
}

// logger returns the logger of the work at hand: the reconciler's, from the
// context, with the cluster and revision attached; else the provider's.
func (p *Provider) logger(ctx context.Context) *slog.Logger {
	if l, ok := reconcile.ContextLogger(ctx); ok {
		return l
	}
	return p.log
}

// clusterLogger is logger for a call about one cluster's machines: the
// sync's logger already names the cluster (reconcile.Apply puts it there),
// so the key is added only to the provider's own, and no line repeats it.
func (p *Provider) clusterLogger(ctx context.Context, cluster string) *slog.Logger {
	if l, ok := reconcile.ContextLogger(ctx); ok {
		return l
	}
	return p.log.With("cluster", cluster)
}
