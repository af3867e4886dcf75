// Command barelist is the floor of a no-op sync for benchmarks: a bare
// program that makes only the provider's list calls, DescribeInstances
// paginated with the filters given, through the AWS SDK's default
// configuration (AWS_* environment variables), and prints how many
// instances it saw.
//
//	barelist -filter tag:fleetd.io/fleet=bench -filter instance-state-name=running,stopped
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

type filters []types.Filter

func (f *filters) String() string { return fmt.Sprint(*f) }

func (f *filters) Set(s string) error {
	name, values, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want name=value[,value...]", s)
	}
	*f = append(*f, types.Filter{Name: sdkaws.String(name), Values: strings.Split(values, ",")})
	return nil
}

func main() {
	var fs filters
	flag.Var(&fs, "filter", "a DescribeInstances filter, name=value[,value...] (repeatable)")
	flag.Parse()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "barelist:", err)
		os.Exit(1)
	}
	pages := ec2.NewDescribeInstancesPaginator(ec2.NewFromConfig(cfg), &ec2.DescribeInstancesInput{Filters: fs, MaxResults: sdkaws.Int32(1000)})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "barelist:", err)
			os.Exit(1)
		}
		for _, r := range page.Reservations {
			n += len(r.Instances)
		}
	}
	fmt.Println(n)
}
